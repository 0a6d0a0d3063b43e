"""Wire models of the seed's text API (/chat, /enhance, /generate). No torch, no FastAPI here.

Requests convert themselves to engine parameters (`sampling_params`). Field constraints live
here so that FastAPI's validation names the field; checks that need the model (context length,
chat template, aliases) are done once at admission in `serving.py`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pureinfer.engines.base import SamplingParams

ARCHITECTURE = "pure_inference_engine"
MAX_STOP_STRINGS = 4
SEED_MAX = 2**63 - 1

Endpoint = Literal["chat", "enhance", "generate"]
DEFAULT_MAX_TOKENS: dict[str, int] = {"chat": 512, "generate": 512, "enhance": 200}


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class SamplingFields(BaseModel):
    """Decoding fields shared by the seed endpoints and the OpenAI surface."""

    max_tokens: int | None = Field(default=None, ge=1, description="Defaults: 512 (/chat, /generate), 200 (/enhance)")
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0, description="0 disables top-k")
    stop: list[str] | None = Field(default=None, description=f"Up to {MAX_STOP_STRINGS} stop strings")
    seed: int | None = Field(default=None, ge=0, le=SEED_MAX)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    min_tokens: int = Field(default=0, ge=0, description="EOS and stop strings cannot end the output earlier")
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

    def sampling_params(self, max_tokens: int) -> SamplingParams:
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_tokens=self.min_tokens,
            repetition_penalty=self.repetition_penalty,
            stop=tuple(self.stop or ()),
            seed=self.seed,
        )


class ChatRequest(SamplingFields):
    """Body of /chat and /enhance: the caller's messages, run through the chat template as they are."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1)


class GenerateRequest(SamplingFields):
    """Body of text /generate: `messages` (chat template) or a raw `prompt` (base models), not both."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] | None = Field(default=None, min_length=1)
    prompt: str | None = Field(default=None, min_length=1)


TextRequestBody = ChatRequest | GenerateRequest


class ExecutionMetadata(BaseModel):
    worker_type: str
    architecture: str = ARCHITECTURE


class TextResponse(BaseModel):
    """Every field the seed shows for the three endpoints, plus the proof of what ran."""

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
    finish_reason: Literal["stop", "length"]
    request_id: str
    execution_metadata: ExecutionMetadata

    def wire(self) -> dict[str, Any]:
        """The JSON body: fields that do not belong to this endpoint are left out, not null."""
        return self.model_dump(exclude_none=True)
