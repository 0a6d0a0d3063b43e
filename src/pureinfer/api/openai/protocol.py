"""OpenAI-compatible wire models (chat completions, models). Unknown fields are ignored, as the
official clients send optional ones we do not use; fields we cannot honour are refused by name."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pureinfer.api.native.protocol import SamplingFields


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        # vLLM's rule for text-only content parts: joined with newlines. No other change is made.
        return self.content if isinstance(self.content, str) else "\n".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(SamplingFields):
    """OpenAI's chat completions; defaults are OpenAI's (`DEFAULTS["openai"]` in the native protocol)."""

    model_config = ConfigDict(extra="ignore")

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, description="The newer name of max_tokens; "
                                              "it wins when both are given")
    n: int = Field(default=1, ge=1, le=1, description="Only n = 1 is supported")
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="Not supported; 0 only")
    frequency_penalty: float = Field(default=0.0, ge=0.0, le=0.0, description="Not supported; 0 only")
    logprobs: bool | None = Field(default=None, description="Not supported")
    user: str | None = None

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | None) -> bool | None:
        if value:
            raise ValueError("logprobs are not supported")
        return value

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def chat_messages(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def model_card(alias: str, created: int) -> dict[str, Any]:
    return {"id": alias, "object": "model", "created": created, "owned_by": "pureinfer"}
