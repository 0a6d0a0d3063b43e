"""The bridge between the text surfaces (native and OpenAI) and the text engines.

`TextServing.generate` reads like TGI's `generate_stream`: take a permit from the one admission
gate (WORKER_OVERLOADED past capacity, nothing tokenized yet), validate into the request the
engine trusts (`validation.py`), and hand that to the engine, which streams deltas until EOS, a
stop string, max_tokens or the deadline. The result is a `TextGeneration`, which the surface
answering the request owns and closes in every path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from pureinfer import metrics
from pureinfer.api.admission import Admission, Permit
from pureinfer.api.native.protocol import ExecutionMetadata, SamplingFields, Surface, TextResponse
from pureinfer.api.native.validation import TextLimits, TextValidation, ValidTextRequest
from pureinfer.engines.base import TextDelta, TextEngine
from pureinfer.logging import prompt_for_log

log = logging.getLogger("pureinfer.text")


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

    def build(self, admitted_at: float) -> Completion:
        return Completion("".join(self.parts), self.token_ids, self.finish_reason, time.monotonic() - admitted_at)


class TextGeneration:
    """One admitted text request: its valid form, its permit and the engine's stream of it.

    `aclose()` ends it exactly once, whatever happened: after the last delta, an error, a client
    that went away, or a streaming response cancelled before its body began (its generators
    then never run, which is why the response closes this object rather than a generator's
    `finally`; see api/sse.py). It aborts the request in the engine first and returns the permit
    second, so an engine never holds more requests than the gate let in."""

    def __init__(self, valid: ValidTextRequest, permit: Permit) -> None:
        self.valid = valid
        self._permit = permit
        self._stream: AsyncGenerator[TextDelta, None] = valid.engine.generate(valid.request)  # runs when iterated
        self._n_tokens = 0
        self._finished = False
        self._closed = False

    async def deltas(self) -> AsyncIterator[TextDelta]:
        """The engine's deltas, with the latency metrics."""
        v = self.valid
        first_at: float | None = None
        last_at = v.admitted_at
        async for delta in self._stream:
            now = time.monotonic()
            if first_at is None:
                first_at = now
                metrics.TTFT.labels(v.alias).observe(now - v.admitted_at)
                metrics.QUEUE_TIME.labels(v.alias).observe(now - v.admitted_at)
            else:
                metrics.ITL.labels(v.alias).observe(now - last_at)
            last_at = now
            self._n_tokens += len(delta.token_ids)
            yield delta
        self._finished = True

    async def complete(self) -> Completion:
        builder = CompletionBuilder()
        async for delta in self.deltas():
            builder.add(delta)
        return builder.build(self.valid.admitted_at)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._stream.aclose()
        finally:
            self._permit.release()
            v = self.valid
            metrics.PROMPT_TOKENS.labels(v.alias).inc(v.prompt_tokens)
            metrics.GENERATION_TOKENS.labels(v.alias).inc(self._n_tokens)
            if self._finished:
                metrics.E2E.labels(v.alias).observe(time.monotonic() - v.admitted_at)

    async def __aenter__(self) -> TextGeneration:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class TextServing:
    """Turns wire requests into engine runs and engine output into wire responses."""

    worker_type = "chat"

    def __init__(self, engines: dict[str, TextEngine], admission: Admission, limits: TextLimits) -> None:
        self.validation = TextValidation(engines, limits)
        self.engines = engines
        self.default_alias = self.validation.default_alias
        self.admission = admission
        self.limits = limits

    async def generate(self, surface: Surface, body: SamplingFields, request_id: str) -> TextGeneration:
        """A permit, then one validation; the caller owns the returned generation and closes it."""
        permit = self.admission.acquire("text")
        try:
            valid = await self.validation.validate(surface, body, request_id, admitted_at=time.monotonic())
        except BaseException:
            permit.release()
            raise
        return TextGeneration(valid, permit)

    def response(self, g: TextGeneration, c: Completion) -> TextResponse:
        """The native response for the endpoint, with the proof fields and the seed."""
        v = g.valid
        log.info("text request completed", extra={
            "event": "result", "endpoint": v.surface, "model": v.alias, "prompt_tokens": v.prompt_tokens,
            "tokens_generated": len(c.token_ids), "finish_reason": c.finish_reason,
            "generation_time": round(c.generation_time, 4),
            "response_preview": prompt_for_log(c.text, self.limits.log_prompts),
        })
        return TextResponse(
            response=c.text if v.surface in ("chat", "generate") else None,
            enhanced_prompt=c.text if v.surface in ("chat", "enhance") else None,
            template_respected=True if v.surface == "enhance" else None,
            generation_time=round(c.generation_time, 4),
            tokens_generated=len(c.token_ids),
            model_used=v.alias,
            prompt_tokens=v.prompt_tokens,
            prompt_sha256=v.prompt_sha256,
            seed=v.params.seed,
            finish_reason=c.finish_reason,  # type: ignore[arg-type]
            request_id=v.request_id,
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
