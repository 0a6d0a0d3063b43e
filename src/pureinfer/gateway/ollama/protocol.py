"""Ollama's API (github.com/ollama/ollama docs/api.md) as the gateway takes it: the wire models
shared with the worker (wire/ollama.py), with the gateway's bounds and rules. No FastAPI here.

- the gateway's template is the only system prompt, as on its /chat: a `system` message (chat)
  or `system` field (generate) is refused by name, and so is `raw` (the template always applies);
- a conversation ends with the user's turn (that is /chat's `message`, the turns before it its
  `history`);
- options: `temperature`, `top_p`, `top_k`, `seed` (-1: drawn), `num_predict` (-1/-2: the
  template's token limit), `stop`; Ollama's defaults for temperature, top_p and top_k are sent
  explicitly, so a request means the same here and on a worker; load-time options are accepted
  and ignored; anything else, and features a text model cannot honour, are refused by name.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pureinfer.wire import ollama as wire

# Ollama's own defaults (its docs' "Valid Parameters and Values").
OLLAMA_DEFAULTS = {"temperature": 0.8, "top_p": 0.9, "top_k": 40}


class Options(wire.Options):
    # Tighter than the worker's: bounded as the gateway's /chat bounds the fields they become
    # (prompting/protocol.py's ChatRequest: top_k, max_tokens, stop).
    top_k: int | None = Field(default=None, ge=0, le=2**31 - 1)
    num_predict: int | None = Field(default=None, ge=-2, le=32_768)
    stop: list[str] | None = Field(default=None, max_length=4)

    def chat_fields(self) -> dict[str, Any]:
        """The gateway /chat's fields for these options (Ollama's defaults where none was given)."""
        out: dict[str, Any] = {**OLLAMA_DEFAULTS}
        out.update({k: v for k, v in (("temperature", self.temperature), ("top_p", self.top_p),
                                      ("top_k", self.top_k), ("stop", self.stop)) if v is not None})
        if self.seed is not None and self.seed >= 0:
            out["seed"] = self.seed
        if self.num_predict is not None and self.num_predict > 0:
            out["max_tokens"] = self.num_predict
        return out


class _OllamaRequest(wire.OllamaRequest):
    model: str = Field(min_length=1, max_length=100)
    options: Options | None = None

    def chat_fields(self) -> dict[str, Any]:
        return (self.options or Options()).chat_fields()

    @property
    def alias(self) -> str:
        return self.model.removesuffix(":latest")


class OllamaChatRequest(_OllamaRequest, wire.OllamaChatRequest):
    pass


class OllamaGenerateRequest(_OllamaRequest, wire.OllamaGenerateRequest):
    pass


class ShowRequest(wire.ShowRequest):
    model: str | None = Field(default=None, min_length=1, max_length=100)
    name: str | None = Field(default=None, min_length=1, max_length=100)
