"""The bridge between the text wire models and a `TextEngine` (vLLM's `serving_*` role).

Admission, in this order, before any token reaches the engine:
  1. a slot (WORKER_OVERLOADED past capacity; nothing has been tokenized yet),
  2. the model alias (INVALID_PAYLOAD naming `model`),
  3. the prompt: the tokenizer's own chat template over the caller's messages, untouched, or the
     raw `prompt` on /generate; its SHA-256 is the proof of what ran,
  4. the limits: max_tokens against the configured maximum, prompt + max_tokens against the
     context (TOKEN_LIMIT_EXCEEDED with the counts). Nothing is ever truncated.
Then the engine streams deltas until EOS, a stop string, max_tokens or the deadline (queue time
included), which cancels the request inside the engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from pureinfer import metrics
from pureinfer.api.admission import Admission, Slot
from pureinfer.api.native.protocol import (
    DEFAULT_MAX_TOKENS,
    ChatRequest,
    Endpoint,
    ExecutionMetadata,
    GenerateRequest,
    SamplingFields,
    TextResponse,
)
from pureinfer.engines.base import SamplingParams, TextDelta, TextEngine, TextRequest
from pureinfer.errors import InvalidPayload, TokenLimitExceeded, WorkerTimeout
from pureinfer.logging import PromptLogging, prompt_for_log

log = logging.getLogger("pureinfer.text")


@dataclass(frozen=True)
class TextLimits:
    max_tokens_limit: int
    request_timeout_s: float
    log_prompts: PromptLogging


@dataclass
class PreparedText:
    """A request that passed admission: what the engine will run, and the slot it holds."""

    endpoint: str
    request_id: str
    alias: str
    engine: TextEngine
    prompt: str
    prompt_ids: list[int]
    prompt_sha256: str
    params: SamplingParams
    admitted_at: float  # time.monotonic()
    deadline: float
    slot: Slot

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str
    generation_time: float


@dataclass
class CompletionBuilder:
    """Collects deltas into the final `Completion` (used by the JSON and the streaming paths)."""

    parts: list[str] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    finish_reason: str = "length"

    def add(self, delta: TextDelta) -> None:
        self.parts.append(delta.text)
        self.token_ids.extend(delta.token_ids)
        self.finish_reason = delta.finish_reason or self.finish_reason

    def build(self, p: PreparedText) -> Completion:
        return Completion("".join(self.parts), self.token_ids, self.finish_reason, time.monotonic() - p.admitted_at)


class TextServing:
    """Turns validated requests into engine calls and engine output into wire responses."""

    worker_type = "chat"

    def __init__(self, engines: dict[str, TextEngine], admission: Admission, limits: TextLimits) -> None:
        if not engines:
            raise ValueError("TextServing needs at least one engine")
        self.engines = engines
        self.default_alias = next(iter(engines))
        self.admission = admission
        self.limits = limits

    # ---- admission -------------------------------------------------------------------------
    async def prepare(self, endpoint: str, body: SamplingFields, request_id: str,
                      messages: Sequence[dict[str, str]] | None = None, prompt: str | None = None) -> PreparedText:
        """Validate against the model and take a slot; the caller must run or release it."""
        slot = self.admission.acquire("text")
        try:
            return await self._prepare(endpoint, body, request_id, messages, prompt, slot)
        except BaseException:
            slot.release()
            raise

    async def prepare_seed(self, endpoint: Endpoint, body: ChatRequest | GenerateRequest,
                           request_id: str) -> PreparedText:
        """The seed endpoints: /chat and /enhance take messages; /generate messages or a prompt."""
        messages = [m.model_dump() for m in body.messages] if body.messages is not None else None
        prompt = body.prompt if isinstance(body, GenerateRequest) else None
        if isinstance(body, GenerateRequest) and (messages is None) == (prompt is None):
            field = "prompt" if prompt is not None else "messages"
            raise InvalidPayload.field(field, "give exactly one of `messages` (chat template) or `prompt` (raw text)")
        return await self.prepare(endpoint, body, request_id, messages=messages, prompt=prompt)

    async def _prepare(self, endpoint: str, body: SamplingFields, request_id: str,
                       messages: Sequence[dict[str, str]] | None, prompt: str | None, slot: Slot) -> PreparedText:
        admitted_at = time.monotonic()
        alias = body.model or self.default_alias
        engine = self.engines.get(alias)
        if engine is None:
            raise InvalidPayload.field("model", f"unknown model '{alias}'; this worker serves {sorted(self.engines)}")
        max_tokens = body.max_tokens if body.max_tokens is not None else DEFAULT_MAX_TOKENS.get(endpoint, 512)
        if body.min_tokens > max_tokens:
            raise InvalidPayload.field("min_tokens", f"min_tokens ({body.min_tokens}) exceeds max_tokens ({max_tokens})")

        if messages is not None and not engine.has_chat_template:
            raise InvalidPayload.field(
                "messages", f"model '{alias}' has no chat template; send a raw `prompt` to /generate instead")
        # One hop off the event loop for the template and the tokenizer (long prompts take ms).
        text, ids = await asyncio.to_thread(_render_and_encode, engine, messages, prompt)
        if not ids:
            raise InvalidPayload.field("prompt", "the prompt encodes to zero tokens")

        details = {"n_prompt_tokens": len(ids), "max_tokens": max_tokens, "n_ctx": engine.n_ctx,
                   "max_tokens_limit": self.limits.max_tokens_limit}
        if max_tokens > self.limits.max_tokens_limit:
            raise TokenLimitExceeded(
                f"max_tokens {max_tokens} exceeds this worker's maximum of {self.limits.max_tokens_limit}", details)
        if len(ids) + max_tokens > engine.n_ctx:
            raise TokenLimitExceeded(
                f"prompt ({len(ids)} tokens) + max_tokens ({max_tokens}) exceeds the context length ({engine.n_ctx})",
                details)

        prepared = PreparedText(
            endpoint=endpoint, request_id=request_id, alias=alias, engine=engine, prompt=text, prompt_ids=ids,
            prompt_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            params=body.sampling_params(max_tokens), admitted_at=admitted_at,
            deadline=admitted_at + self.limits.request_timeout_s, slot=slot,
        )
        log.info("text request admitted", extra={
            "event": "request", "endpoint": endpoint, "model": alias,
            "messages_count": len(messages) if messages is not None else 0,
            "prompt_preview": prompt_for_log(messages[-1]["content"] if messages else text, self.limits.log_prompts),
            "prompt_chars": len(text), "prompt_tokens": len(ids), "max_tokens": max_tokens,
        })
        return prepared

    # ---- running ---------------------------------------------------------------------------
    async def deltas(self, p: PreparedText) -> AsyncIterator[TextDelta]:
        """The engine's deltas, with metrics, the deadline enforced, and the slot released at the end."""
        request = TextRequest(request_id=p.request_id, prompt_ids=p.prompt_ids, params=p.params, deadline=p.deadline)
        agen = p.engine.generate(request)
        first_at: float | None = None
        last_at = p.admitted_at
        n_tokens = 0
        ok = False
        try:
            # The engine enforces the deadline itself; this is the backstop if it cannot.
            async with asyncio.timeout_at(p.deadline + 1.0):
                async for delta in agen:
                    now = time.monotonic()
                    if first_at is None:
                        first_at = now
                        metrics.TTFT.labels(p.alias).observe(now - p.admitted_at)
                        metrics.QUEUE_TIME.labels(p.alias).observe(now - p.admitted_at)
                    else:
                        metrics.ITL.labels(p.alias).observe(now - last_at)
                    last_at = now
                    n_tokens += len(delta.token_ids)
                    yield delta
            ok = True
        except TimeoutError:
            raise WorkerTimeout(f"Deadline of {self.limits.request_timeout_s:g} s passed",
                                {"timeout_s": self.limits.request_timeout_s}) from None
        finally:
            await agen.aclose()
            p.slot.release()
            elapsed = time.monotonic() - p.admitted_at
            metrics.PROMPT_TOKENS.labels(p.alias).inc(p.prompt_tokens)
            metrics.GENERATION_TOKENS.labels(p.alias).inc(n_tokens)
            if ok:
                metrics.E2E.labels(p.alias).observe(elapsed)

    async def complete(self, p: PreparedText) -> Completion:
        builder = CompletionBuilder()
        async for delta in self.deltas(p):
            builder.add(delta)
        return builder.build(p)

    def response(self, p: PreparedText, c: Completion) -> TextResponse:
        """The seed's response for the endpoint, with the proof fields."""
        text = c.text
        log.info("text request completed", extra={
            "event": "result", "endpoint": p.endpoint, "model": p.alias, "prompt_tokens": p.prompt_tokens,
            "tokens_generated": len(c.token_ids), "finish_reason": c.finish_reason,
            "generation_time": round(c.generation_time, 4),
            "response_preview": prompt_for_log(text, self.limits.log_prompts),
        })
        return TextResponse(
            response=text if p.endpoint in ("chat", "generate") else None,
            enhanced_prompt=text if p.endpoint in ("chat", "enhance") else None,
            template_respected=True if p.endpoint == "enhance" else None,
            generation_time=round(c.generation_time, 4),
            tokens_generated=len(c.token_ids),
            model_used=p.alias,
            prompt_tokens=p.prompt_tokens,
            prompt_sha256=p.prompt_sha256,
            finish_reason=c.finish_reason,  # type: ignore[arg-type]
            request_id=p.request_id,
            execution_metadata=ExecutionMetadata(worker_type=self.worker_type),
        )

    # ---- facts for /health, /status, /worker/info ------------------------------------------
    def models(self) -> list[str]:
        return list(self.engines)

    def is_alive(self) -> bool:
        return all(e.is_alive() for e in self.engines.values())

    def running(self) -> int:
        return sum(e.num_running for e in self.engines.values())

    def waiting(self) -> int:
        return sum(e.num_waiting for e in self.engines.values())


def _render_and_encode(engine: TextEngine, messages: Sequence[dict[str, str]] | None,
                       prompt: str | None) -> tuple[str, list[int]]:
    """The model's own chat template over the messages (or the raw prompt as it is), and its ids.
    A template that refuses the conversation is the caller's error."""
    import jinja2

    if messages is None:
        assert prompt is not None
        text = prompt
    else:
        try:
            text = engine.apply_chat_template(messages)
        except jinja2.TemplateError as exc:
            raise InvalidPayload.field("messages", f"the model's chat template refused these messages: {exc}") from None
    return text, engine.encode(text)
