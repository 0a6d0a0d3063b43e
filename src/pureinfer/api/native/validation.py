"""Validation, once, at admission (TGI's `validation.rs`): a text request from any surface becomes
the `ValidTextRequest` that the engine runs as it is. Nothing after this point checks it again.

In this order, after the permit was taken and before anything reaches an engine:
  1. the model alias (INVALID_PAYLOAD naming `model`);
  2. the sampling parameters: the caller's values, `protocol.DEFAULTS` of the surface for the
     rest, and the seed, the caller's or drawn here, so every response can report the seed it
     used;
  3. the input: exactly one of `messages` (chat template) or a raw `prompt` (/generate);
     messages need a model with a chat template, and no message content may hold a control token;
  4. the prompt: the tokenizer's own chat template over the messages, untouched, or the raw
     prompt as it is; the SHA-256 of that text is the proof of what ran;
  5. the limits: max_tokens against the configured maximum, prompt + max_tokens against the
     context (TOKEN_LIMIT_EXCEEDED with the counts). Nothing is ever truncated.
The deadline (`request_timeout_s`, queue time included) counts from the moment of admission.

Message contents are text, never markup
---------------------------------------
A message content that holds one of the tokenizer's control tokens (every special or added
token: `<|im_start|>`, `<|im_end|>`, `<tool_call>`, ...) is refused with INVALID_PAYLOAD naming
the field (`messages.1.content`) and the tokens. Tokenized as it is, such a content would become
real control tokens, and the model would see turns no caller sent as turns (an extra system
message), so the chat template would no longer be the only markup. We refuse rather than
tokenize contents as plain text because then the rendered prompt has exactly one tokenization,
`encode(rendered)`: `prompt_sha256` of the rendered text pins the token sequence the model
received, which an escaping tokenizer would make ambiguous. A raw `prompt` on /generate is the
caller's exact text, special tokens included.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from pureinfer.api.native.protocol import DEFAULTS, SamplingFields, Surface
from pureinfer.engines.base import SamplingParams, TextEngine, TextRequest
from pureinfer.errors import InvalidPayload, TokenLimitExceeded
from pureinfer.logging import PromptLogging, prompt_for_log

log = logging.getLogger("pureinfer.text")

# Drawn seeds fit 32 bits (as images' do), so every JSON client, JavaScript's included, reads the
# reported seed exactly.
DRAWN_SEED_BOUND = 2**32


@dataclass(frozen=True)
class TextLimits:
    max_tokens_limit: int
    request_timeout_s: float
    log_prompts: PromptLogging


@dataclass(frozen=True)
class ValidTextRequest:
    """A text request that passed validation: the engine's `TextRequest` (prompt ids, fully
    specified parameters with the seed, the deadline) and what the response reports."""

    surface: Surface
    alias: str
    engine: TextEngine
    request: TextRequest
    prompt_sha256: str
    admitted_at: float  # time.monotonic()

    @property
    def request_id(self) -> str:
        return self.request.request_id

    @property
    def params(self) -> SamplingParams:
        return self.request.params

    @property
    def prompt_tokens(self) -> int:
        return len(self.request.prompt_ids)


class TextValidation:
    """Validates text requests against the loaded models and the worker's limits."""

    def __init__(self, engines: dict[str, TextEngine], limits: TextLimits) -> None:
        if not engines:
            raise ValueError("text validation needs at least one engine")
        self.engines = engines
        self.default_alias = next(iter(engines))
        self.limits = limits
        self._markup = {alias: _markup_pattern(e.control_tokens) for alias, e in engines.items()}

    async def validate(self, surface: Surface, body: SamplingFields, request_id: str,
                       admitted_at: float) -> ValidTextRequest:
        # 1. The model.
        alias = body.model or self.default_alias
        engine = self.engines.get(alias)
        if engine is None:
            raise InvalidPayload.field("model", f"unknown model '{alias}'; this worker serves {sorted(self.engines)}")
        # 2. The parameters, fully defaulted, and the seed.
        seed = body.seed if body.seed is not None else secrets.randbelow(DRAWN_SEED_BOUND)
        params = body.sampling_params(DEFAULTS[surface], seed)
        if params.min_tokens > params.max_tokens:
            raise InvalidPayload.field(
                "min_tokens", f"min_tokens ({params.min_tokens}) exceeds max_tokens ({params.max_tokens})")
        # 3. The input.
        messages, prompt = body.chat_messages(), body.raw_prompt()
        if (messages is None) == (prompt is None):
            raise InvalidPayload.field("prompt" if prompt is not None else "messages",
                                       "give exactly one of `messages` (chat template) or `prompt` (raw text)")
        if messages is not None and not engine.has_chat_template:
            raise InvalidPayload.field(
                "messages", f"model '{alias}' has no chat template; send a raw `prompt` to /generate instead")
        # 4. The prompt: one hop off the event loop for the scan, the template and the tokenizer.
        text, ids = await asyncio.to_thread(_render_and_encode, engine, self._markup[alias], messages, prompt)
        if not ids:
            raise InvalidPayload.field("prompt", "the prompt encodes to zero tokens")
        # 5. The limits.
        self._check_limits(engine, len(ids), params.max_tokens)

        deadline = admitted_at + self.limits.request_timeout_s
        valid = ValidTextRequest(
            surface=surface, alias=alias, engine=engine, request=TextRequest(request_id, ids, params, deadline),
            prompt_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), admitted_at=admitted_at)
        log.info("text request admitted", extra={
            "event": "request", "endpoint": surface, "model": alias,
            "messages_count": len(messages) if messages is not None else 0,
            "prompt_preview": prompt_for_log(messages[-1]["content"] if messages else text, self.limits.log_prompts),
            "prompt_chars": len(text), "prompt_tokens": len(ids), "max_tokens": params.max_tokens, "seed": seed,
        })
        return valid

    def _check_limits(self, engine: TextEngine, n_prompt: int, max_tokens: int) -> None:
        details = {"n_prompt_tokens": n_prompt, "max_tokens": max_tokens, "n_ctx": engine.n_ctx,
                   "max_tokens_limit": self.limits.max_tokens_limit}
        if max_tokens > self.limits.max_tokens_limit:
            raise TokenLimitExceeded(
                f"max_tokens {max_tokens} exceeds this worker's maximum of {self.limits.max_tokens_limit}", details)
        if n_prompt + max_tokens > engine.n_ctx:
            raise TokenLimitExceeded(
                f"prompt ({n_prompt} tokens) + max_tokens ({max_tokens}) exceeds the context length ({engine.n_ctx})",
                details)


def _markup_pattern(tokens: frozenset[str]) -> re.Pattern[str] | None:
    """One regex for all of a tokenizer's control tokens (longest first), compiled once per model."""
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def _render_and_encode(engine: TextEngine, markup: re.Pattern[str] | None,
                       messages: Sequence[dict[str, str]] | None, prompt: str | None) -> tuple[str, list[int]]:
    """The model's own chat template over the messages (or the raw prompt as it is), and its ids."""
    if messages is None:
        assert prompt is not None
        return prompt, engine.encode(prompt)
    _refuse_markup(messages, markup)
    text = engine.apply_chat_template(messages)
    return text, engine.encode(text)


def _refuse_markup(messages: Sequence[dict[str, str]], markup: re.Pattern[str] | None) -> None:
    """INVALID_PAYLOAD naming every message content that holds a control token (module docstring)."""
    if markup is None:
        return
    fields: list[dict[str, str]] = []
    found: set[str] = set()
    for i, message in enumerate(messages):
        tokens = sorted(set(markup.findall(message["content"])))
        if tokens:
            found.update(tokens)
            fields.append({"field": f"messages.{i}.content",
                           "message": f"holds the tokenizer's control token(s) {' '.join(tokens)}; "
                                      "message contents are text and cannot carry chat markup"})
    if fields:
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:3])
        raise InvalidPayload(f"Invalid request: {summary}", {"fields": fields, "control_tokens": sorted(found)})
