"""Ollama's API (github.com/ollama/ollama docs/api.md) as the worker takes it: the wire models
shared with the gateway (wire/ollama.py) with the worker's bounds and its translation. No torch,
no FastAPI here.

A request converts itself into the native request of the same meaning (`ChatRequest` or
`GenerateRequest`), which then takes the one text path: admission, validation, the model's own
chat template, the engine. Options map to our sampling fields one to one:
`temperature`, `top_p`, `top_k`, `seed` (-1: drawn), `num_predict` (max_tokens; -1 and -2, Ollama's
"until the end", take the default), `stop`. Options that only tell Ollama's runner how to load or
place a model (`num_gpu`, `num_thread`, `num_ctx`, ...) change nothing in the output and are
accepted and ignored; every other option, and every feature a pure-inference text model cannot
honour (images, tools, `format`, `template`, `context`, `suffix`, thinking), is refused by name
rather than dropped: a caller must never get an answer to a request we did not run.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from pureinfer.api.native.protocol import MAX_STOP_STRINGS, ChatRequest, GenerateRequest, Message
from pureinfer.wire import ollama as wire


class Options(wire.Options):
    """`options`: the five sampling options and top_k; load-time ones are accepted and ignored."""

    # Redeclared to say the worker's own: its default token count, and its stop-string bound
    # (checked below by the native request's rule and message).
    num_predict: int | None = Field(default=None, ge=-2, description="Tokens to generate at most; -1 and -2 "
                                    "(Ollama's 'until the end') take the default, 512")
    stop: list[str] | None = Field(default=None, description=f"Up to {MAX_STOP_STRINGS} stop strings")

    @field_validator("stop")
    @classmethod
    def _stop_limits(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed, got {len(value)}")
        if value is not None and any(s == "" for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    def sampling(self) -> dict[str, Any]:
        """Our sampling fields, only those the caller set (the surface's defaults fill the rest)."""
        out: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k,
                               "stop": self.stop,
                               "seed": self.seed if self.seed is not None and self.seed >= 0 else None,
                               "max_tokens": self.num_predict if self.num_predict and self.num_predict > 0 else None}
        return {k: v for k, v in out.items() if v is not None}


class _OllamaRequest(wire.OllamaRequest):
    options: Options | None = None

    def sampling(self) -> dict[str, Any]:
        return self.options.sampling() if self.options else {}


class OllamaChatRequest(_OllamaRequest, wire.OllamaChatRequest):
    """`POST /api/chat`. No messages: Ollama's "load the model" call, answered at once."""

    def to_native(self, alias: str) -> ChatRequest:
        return ChatRequest(model=alias, stream=self.stream, **self.sampling(),
                           messages=[Message(role=m.role, content=m.content) for m in self.messages])


class OllamaGenerateRequest(_OllamaRequest, wire.OllamaGenerateRequest):
    """`POST /api/generate`: `system` + `prompt` through the model's chat template, or with
    `raw: true` the prompt exactly as sent. An empty prompt is Ollama's "load the model" call."""

    def to_native(self, alias: str) -> GenerateRequest:
        if self.raw:  # a system prompt with raw was refused by the serving (it names the field)
            return GenerateRequest(model=alias, stream=self.stream, prompt=self.prompt, **self.sampling())
        messages = ([Message(role="system", content=self.system)] if self.system else []) + [
            Message(role="user", content=self.prompt)]
        return GenerateRequest(model=alias, stream=self.stream, messages=messages, **self.sampling())
