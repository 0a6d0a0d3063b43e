"""Wire models of Ollama's API (github.com/ollama/ollama docs/api.md) as both the worker
(api/ollama/) and the gateway (gateway/ollama/) take them, and the reply pieces both write. No
torch, no FastAPI here.

What is here is what the two surfaces share: the option names and their common bounds, the
load-time options accepted and ignored, the message shape, the fields of /api/chat, /api/generate
and /api/show, and the features refused by name. What differs stays with each side, in subclasses:
how far a sampling option may go (the worker's engine limits; the gateway's store and its /chat),
how options become that side's own request, and the gateway's own rules (its template is the only
system prompt, so `system` and `raw` are refused there).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Kind = Literal["chat", "generate"]

# Load-time and placement options of Ollama's runner: no effect on what is generated here (our
# context is the model's; a prompt past it is refused, never truncated as num_ctx would).
IGNORED_OPTIONS = ("numa", "num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv", "vocab_only",
                   "use_mmap", "use_mlock", "num_thread", "embedding_only", "logits_all")
UNSUPPORTED = "not supported by this server (pure inference, text only)"
# A signed 64-bit integer: the largest seed a worker's engine takes and the gateway's store holds.
SEED_MAX = 2**63 - 1


def refuse_set(value: Any) -> Any:
    """A feature we cannot honour: refused when the caller actually uses it (empty values pass)."""
    if value:
        raise ValueError(UNSUPPORTED)
    return value


class Options(BaseModel):
    """`options`: the sampling options, bounded as both surfaces bound them (a side tightens a
    bound by redeclaring the field), and the load-time ones, accepted and ignored."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="Default 0.8 (Ollama's)")
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, description="Default 0.9 (Ollama's)")
    top_k: int | None = Field(default=None, ge=0, description="Default 40 (Ollama's); 0 disables it")
    seed: int | None = Field(default=None, ge=-1, le=SEED_MAX, description="-1 or absent: drawn, and reported")
    num_predict: int | None = Field(default=None, ge=-2, description="Tokens to generate at most; -1 and -2 "
                                    "(Ollama's 'until the end') take the default")
    stop: list[str] | None = None
    # Load-time options (IGNORED_OPTIONS), typed so a wrong value is still a named error.
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


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = ""
    images: list[str] | None = Field(default=None, description="Refused: the models served read text only")
    thinking: str | None = None
    tool_calls: list[Any] | None = None

    _unsupported = field_validator("images", "tool_calls")(refuse_set)


class OllamaRequest(BaseModel):
    """The fields /api/chat and /api/generate share. A side narrows `options` to its own Options."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="A name from GET /api/tags (a ':latest' tag is accepted)")
    stream: bool = Field(default=True, description="NDJSON lines by default (Ollama's); false: one object")
    options: Options | None = None
    format: str | dict[str, Any] | None = Field(default=None, description="Refused when set")
    keep_alive: float | str | None = Field(default=None, description="Accepted; models stay loaded")
    think: bool | str | None = Field(default=None, description="Refused when set")

    _unsupported = field_validator("format", "think")(refuse_set)


class OllamaChatRequest(OllamaRequest):
    """`POST /api/chat`'s own fields. No messages: Ollama's "load the model" call, answered at once."""

    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[Any] | None = Field(default=None, description="Refused when set")

    _no_tools = field_validator("tools")(refuse_set)


class OllamaGenerateRequest(OllamaRequest):
    """`POST /api/generate`'s own fields. An empty prompt is Ollama's "load the model" call."""

    prompt: str = ""
    system: str | None = None
    raw: bool = False
    template: str | None = Field(default=None, description="Refused when set: the model's own template applies")
    context: list[int] | None = Field(default=None, description="Refused when set: send the conversation "
                                      "to /api/chat instead")
    suffix: str | None = Field(default=None, description="Refused when set")
    images: list[str] | None = Field(default=None, description="Refused when set")

    _unsupported_here = field_validator("template", "context", "suffix", "images")(refuse_set)


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # `verbose` and the old `name` change nothing here

    model: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1, description="The older name of `model`")

    def model_name(self) -> str | None:
        return self.model or self.name


# -- replies -------------------------------------------------------------------------------------------
def now_iso() -> str:
    """Ollama's `created_at`: RFC 3339 in UTC."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def model_details(model: str) -> dict[str, Any]:
    """A model's `details` in /api/tags and /api/show."""
    return {"parent_model": "", "format": "safetensors", "family": model, "families": [model],
            "parameter_size": "", "quantization_level": ""}


def piece(kind: Kind, model: str, text: str) -> dict[str, Any]:
    """One reply object's text: a streamed piece, or the start of the final object."""
    out: dict[str, Any] = {"model": model, "created_at": now_iso()}
    if kind == "chat":
        out["message"] = {"role": "assistant", "content": text}
    else:
        out["response"] = text
    return out
