"""Wire models of the native text API (WORKER_API.md: /chat, /enhance, /generate); the OpenAI
surface shares `SamplingFields`. No torch, no FastAPI here.

Sampling fields a caller leaves out are None on the wire: their defaults depend on the surface,
and `DEFAULTS` below is the one place they are written. A request converts itself into the
engine's fully specified `SamplingParams` (vLLM's `to_sampling_params`). Field constraints live
here so that FastAPI's validation names the field; what needs the model is checked once in
`validation.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pureinfer.engines.base import SamplingParams

ARCHITECTURE = "pure_inference_engine"
MAX_STOP_STRINGS = 4
SEED_MAX = 2**63 - 1

# Where a text request came in: the native endpoints, OpenAI's chat completions, or Ollama's API.
Surface = Literal["chat", "enhance", "generate", "openai", "ollama"]


@dataclass(frozen=True)
class Defaults:
    """What a surface uses for each sampling field the caller left out."""

    max_tokens: int
    temperature: float
    top_p: float
    top_k: int  # 0: off
    min_tokens: int
    repetition_penalty: float  # 1.0: off


_NATIVE = Defaults(max_tokens=512, temperature=0.7, top_p=0.9, top_k=0, min_tokens=0, repetition_penalty=1.0)
# Every default of a text request. The native endpoints keep WORKER_API.md's values (an
# enhanced prompt is short: 200 tokens); the OpenAI surface keeps OpenAI's temperature and top_p,
# the Ollama surface Ollama's temperature, top_p and top_k (its num_predict -1, "until the context
# is full", has no counterpart: a request without num_predict gets the native 512 tokens).
DEFAULTS: dict[Surface, Defaults] = {
    "chat": _NATIVE,
    "enhance": replace(_NATIVE, max_tokens=200),
    "generate": _NATIVE,
    "openai": replace(_NATIVE, temperature=1.0, top_p=1.0),
    "ollama": replace(_NATIVE, temperature=0.8, top_p=0.9, top_k=40),
}


def _defaults_doc(name: str) -> str:
    values = {surface: getattr(d, name) for surface, d in DEFAULTS.items()}
    paths = {"openai": "/v1/chat/completions", "ollama": "/api/chat, /api/generate"}
    return "Default: " + ", ".join(f"{v} ({paths.get(s, '/' + s)})" for s, v in values.items())


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(description="Text; a content holding one of the tokenizer's control tokens "
                         "(e.g. <|im_start|>) is refused, so it can never forge a turn")


class SamplingFields(BaseModel):
    """Decoding fields shared by the native endpoints and the OpenAI surface."""

    max_tokens: int | None = Field(default=None, ge=1, description=_defaults_doc("max_tokens"))
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description=_defaults_doc("temperature"))
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, description=_defaults_doc("top_p"))
    top_k: int | None = Field(default=None, ge=0, description="0 disables top-k (the default)")
    stop: list[str] | None = Field(default=None, description=f"Up to {MAX_STOP_STRINGS} stop strings")
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX,
                             description="Drawn by the worker when left out; every response reports the seed it used")
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0, description="1.0 (the default) is off")
    min_tokens: int | None = Field(default=None, ge=0, description="EOS and stop strings cannot end the output "
                                   "earlier (default 0)")
    model: str | None = Field(default=None, description="Model alias; the worker's first model by default")
    stream: bool = False

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("stop")
    @classmethod
    def _stop_limits(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if len(value) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings are allowed, got {len(value)}")
        if any(s == "" for s in value):
            raise ValueError("stop strings must not be empty")
        return value

    def requested_max_tokens(self) -> int | None:
        return self.max_tokens

    def chat_messages(self) -> list[dict[str, str]] | None:
        """The conversation for the chat template, or None when the request carries a raw prompt."""
        return None

    def raw_prompt(self) -> str | None:
        """The raw prompt (/generate), or None."""
        return None

    def sampling_params(self, defaults: Defaults, seed: int) -> SamplingParams:
        """The engine's parameters: the caller's values, the surface's `defaults` for the rest."""

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return SamplingParams(
            max_tokens=pick(self.requested_max_tokens(), defaults.max_tokens),
            temperature=pick(self.temperature, defaults.temperature),
            top_p=pick(self.top_p, defaults.top_p),
            top_k=pick(self.top_k, defaults.top_k),
            min_tokens=pick(self.min_tokens, defaults.min_tokens),
            repetition_penalty=pick(self.repetition_penalty, defaults.repetition_penalty),
            stop=tuple(self.stop or ()),
            seed=seed,
        )


class ChatRequest(SamplingFields):
    """Body of /chat and /enhance: the caller's messages, run through the chat template as they are."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1)

    def chat_messages(self) -> list[dict[str, str]]:
        return [m.model_dump() for m in self.messages]


class GenerateRequest(SamplingFields):
    """Body of text /generate: `messages` (chat template) or a raw `prompt` (base models), not both."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] | None = Field(default=None, min_length=1)
    prompt: str | None = Field(default=None, min_length=1,
                               description="Sent to the model as it is, special tokens included")

    def chat_messages(self) -> list[dict[str, str]] | None:
        return None if self.messages is None else [m.model_dump() for m in self.messages]

    def raw_prompt(self) -> str | None:
        return self.prompt


class ExecutionMetadata(BaseModel):
    worker_type: str
    architecture: str = ARCHITECTURE


class TextResponse(BaseModel):
    """Every field WORKER_API.md shows for the three endpoints, plus the proof of what ran and
    the seed that reproduces it."""

    model_config = ConfigDict(extra="forbid")

    success: bool = True
    response: str | None = None
    enhanced_prompt: str | None = None
    generation_time: float
    tokens_generated: int
    model_used: str
    pure_inference: bool = True
    no_prompt_overrides: bool = True
    template_respected: bool | None = None
    prompt_tokens: int
    prompt_sha256: str
    seed: int = Field(description="The seed sampling used (the caller's, or drawn): send it to get the same output")
    finish_reason: Literal["stop", "length"]
    request_id: str
    execution_metadata: ExecutionMetadata

    def wire(self) -> dict[str, Any]:
        """The JSON body: fields that do not belong to this endpoint are left out, not null."""
        return self.model_dump(exclude_none=True)
