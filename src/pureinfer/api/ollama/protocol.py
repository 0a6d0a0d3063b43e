"""Wire models of Ollama's API (github.com/ollama/ollama docs/api.md), as the official clients send
them. No torch, no FastAPI here.

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

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pureinfer.api.native.protocol import MAX_STOP_STRINGS, SEED_MAX, ChatRequest, GenerateRequest, Message

# Load-time and placement options of Ollama's runner: no effect on what is generated here (our
# context is the model's; a prompt past it is refused, never truncated as num_ctx would).
IGNORED_OPTIONS = ("numa", "num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "f16_kv", "vocab_only",
                   "use_mmap", "use_mlock", "num_thread", "embedding_only", "logits_all")
UNSUPPORTED = "not supported by this server (pure inference, text only)"


class Options(BaseModel):
    """`options`: the five sampling options and top_k; load-time ones are accepted and ignored."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="Default 0.8 (Ollama's)")
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, description="Default 0.9 (Ollama's)")
    top_k: int | None = Field(default=None, ge=0, description="Default 40 (Ollama's); 0 disables it")
    seed: int | None = Field(default=None, ge=-1, le=SEED_MAX, description="-1 or absent: drawn, and reported")
    num_predict: int | None = Field(default=None, ge=-2, description="Tokens to generate at most; -1 and -2 "
                                    "(Ollama's 'until the end') take the default, 512")
    stop: list[str] | None = Field(default=None, description=f"Up to {MAX_STOP_STRINGS} stop strings")
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


def _refuse_set(value: Any) -> Any:
    """A feature we cannot honour: refused when the caller actually uses it (empty values pass)."""
    if value:
        raise ValueError(UNSUPPORTED)
    return value


class OllamaMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = ""
    images: list[str] | None = Field(default=None, description="Refused: the models served read text only")
    thinking: str | None = None
    tool_calls: list[Any] | None = None

    _unsupported = field_validator("images", "tool_calls")(_refuse_set)


class _OllamaRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, description="A name from GET /api/tags (a ':latest' tag is accepted)")
    stream: bool = Field(default=True, description="NDJSON lines by default (Ollama's); false: one object")
    options: Options | None = None
    format: str | dict[str, Any] | None = Field(default=None, description="Refused when set")
    keep_alive: float | str | None = Field(default=None, description="Accepted; models stay loaded")
    think: bool | str | None = Field(default=None, description="Refused when set")

    _unsupported = field_validator("format", "think")(_refuse_set)

    def sampling(self) -> dict[str, Any]:
        return self.options.sampling() if self.options else {}


class OllamaChatRequest(_OllamaRequest):
    """`POST /api/chat`. No messages: Ollama's "load the model" call, answered at once."""

    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[Any] | None = Field(default=None, description="Refused when set")

    _no_tools = field_validator("tools")(_refuse_set)

    def to_native(self, alias: str) -> ChatRequest:
        return ChatRequest(model=alias, stream=self.stream, **self.sampling(),
                           messages=[Message(role=m.role, content=m.content) for m in self.messages])


class OllamaGenerateRequest(_OllamaRequest):
    """`POST /api/generate`: `system` + `prompt` through the model's chat template, or with
    `raw: true` the prompt exactly as sent. An empty prompt is Ollama's "load the model" call."""

    prompt: str = ""
    system: str | None = None
    raw: bool = False
    template: str | None = Field(default=None, description="Refused when set: the model's own template applies")
    context: list[int] | None = Field(default=None, description="Refused when set: send the conversation "
                                      "to /api/chat instead")
    suffix: str | None = Field(default=None, description="Refused when set")
    images: list[str] | None = Field(default=None, description="Refused when set")

    _unsupported_here = field_validator("template", "context", "suffix", "images")(_refuse_set)

    def to_native(self, alias: str) -> GenerateRequest:
        if self.raw:  # a system prompt with raw was refused by the serving (it names the field)
            return GenerateRequest(model=alias, stream=self.stream, prompt=self.prompt, **self.sampling())
        messages = ([Message(role="system", content=self.system)] if self.system else []) + [
            Message(role="user", content=self.prompt)]
        return GenerateRequest(model=alias, stream=self.stream, messages=messages, **self.sampling())


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # `verbose` and the old `name` change nothing here

    model: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1, description="The older name of `model`")

    def model_name(self) -> str | None:
        return self.model or self.name
