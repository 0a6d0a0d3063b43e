"""Wire models of Ollama's API as the gateway takes it (github.com/ollama/ollama docs/api.md). No
FastAPI here. The worker's own Ollama surface (api/ollama/) has the same options; the gateway
keeps its own models because it sits on its own floor and has its own rules:

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

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pureinfer.gateway.bounds import MAX_SQL_BIGINT

UNSUPPORTED = "not supported by this server (pure inference, text only)"
# Ollama's own defaults (its docs' "Valid Parameters and Values").
OLLAMA_DEFAULTS = {"temperature": 0.8, "top_p": 0.9, "top_k": 40}


def _refuse_set(value: Any) -> Any:
    if value:
        raise ValueError(UNSUPPORTED)
    return value


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=2**31 - 1)
    seed: int | None = Field(default=None, ge=-1, le=MAX_SQL_BIGINT)
    num_predict: int | None = Field(default=None, ge=-2, le=32_768)
    stop: list[str] | None = Field(default=None, max_length=4)
    # Load-time options of Ollama's runner: no effect on the output, accepted and ignored.
    numa: bool | None = None
    num_ctx: int | None = Field(default=None, ge=1)
    num_batch: int | None = Field(default=None, ge=1)
    num_gpu: int | None = None
    main_gpu: int | None = Field(default=None, ge=0)
    low_vram: bool | None = None
    f16_kv: bool | None = None
    vocab_only: bool | None = None
    use_mmap: bool | None = None
    use_mlock: bool | None = None
    num_thread: int | None = Field(default=None, ge=0)
    embedding_only: bool | None = None
    logits_all: bool | None = None

    @field_validator("num_predict")
    @classmethod
    def _not_zero(cls, value: int | None) -> int | None:
        if value == 0:
            raise ValueError("must be at least 1 (or -1 for the default)")
        return value

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

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


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = ""
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[Any] | None = None

    _unsupported = field_validator("images", "tool_calls")(_refuse_set)


class _OllamaRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=100)
    stream: bool = True
    options: Options | None = None
    format: str | dict[str, Any] | None = None
    keep_alive: float | str | None = None
    think: bool | str | None = None

    _unsupported = field_validator("format", "think")(_refuse_set)

    def chat_fields(self) -> dict[str, Any]:
        return (self.options or Options()).chat_fields()

    @property
    def alias(self) -> str:
        return self.model.removesuffix(":latest")


class OllamaChatRequest(_OllamaRequest):
    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[Any] | None = None

    _no_tools = field_validator("tools")(_refuse_set)


class OllamaGenerateRequest(_OllamaRequest):
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    template: str | None = None
    context: list[int] | None = None
    suffix: str | None = None
    images: list[str] | None = None

    _unsupported_here = field_validator("template", "context", "suffix", "images")(_refuse_set)


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, min_length=1, max_length=100)
    name: str | None = Field(default=None, min_length=1, max_length=100)
