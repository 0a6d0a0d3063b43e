"""Wire models of the gateway's public endpoints. Requests convert themselves to the template
selection key and to the worker payload, so the service only orchestrates."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pureinfer.gateway.bounds import MAX_SQL_BIGINT
from pureinfer.gateway.templates.protocol import SelectionKey, TemplateView


class Sampling(BaseModel):
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=MAX_SQL_BIGINT, description="the worker's range; audited as BIGINT")

    def sampling(self) -> dict[str, Any]:
        return {k: v for k, v in (("temperature", self.temperature), ("top_p", self.top_p),
                                  ("seed", self.seed)) if v is not None}


class EnhanceRequest(Sampling):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=20_000)
    job_type: str = Field("image", min_length=1, max_length=50)
    target_model: str = Field("sdxl", min_length=1, max_length=100)
    enhancer_model: str | None = Field(None, min_length=1, max_length=100)
    content_mode: Literal["sfw", "nsfw"] = "sfw"
    use_case: str = Field("enhancement", min_length=1, max_length=50)
    quality: str | None = Field(None, max_length=50)
    format: str | None = Field(None, max_length=50)

    def key(self, default_enhancer: str) -> SelectionKey:
        return SelectionKey(self.target_model, self.enhancer_model or default_enhancer, self.job_type,
                            self.use_case, self.content_mode)

    def messages(self, template: TemplateView) -> list[dict[str, str]]:
        return [{"role": "system", "content": template.system_prompt}, {"role": "user", "content": self.prompt}]

    def caller_field(self, index: int) -> str | None:
        """The field of this request that became `messages[index]` (None: the template's)."""
        return "prompt" if index == 1 else None


# Bounds of a chat turn: a long message is about 8k tokens of a 32k context, and a history longer
# than MAX_HISTORY turns does not fit a context anyway; the body limit (--max-body-bytes, 1 MiB)
# caps the total before any of this is parsed.
MAX_MESSAGE_CHARS = 32_000
MAX_HISTORY = 100


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # No "system": the gateway's template is the only system prompt.
    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_MESSAGE_CHARS)


class ChatRequest(Sampling):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    history: list[ChatMessage] = Field(default_factory=list, max_length=MAX_HISTORY)
    job_type: str = Field("chat", min_length=1, max_length=50)
    target_model: str = Field("chat", min_length=1, max_length=100)
    enhancer_model: str | None = Field(None, min_length=1, max_length=100)
    content_mode: Literal["sfw", "nsfw"] = "sfw"
    use_case: str = Field("chat", min_length=1, max_length=50)
    max_tokens: int | None = Field(None, ge=1, le=32_768, description="default: the template's token_limit")
    stream: bool = False

    def key(self, default_enhancer: str) -> SelectionKey:
        return SelectionKey(self.target_model, self.enhancer_model or default_enhancer, self.job_type,
                            self.use_case, self.content_mode)

    def messages(self, template: TemplateView) -> list[dict[str, str]]:
        return ([{"role": "system", "content": template.system_prompt}]
                + [m.model_dump() for m in self.history] + [{"role": "user", "content": self.message}])

    def caller_field(self, index: int) -> str | None:
        """The field of this request that became `messages[index]` (None: the template's)."""
        if 1 <= index <= len(self.history):
            return f"history.{index - 1}.content"
        return "message" if index == len(self.history) + 1 else None


class ExecutionMetadata(BaseModel):
    template_name: str
    template_version: int
    fallback_level: int
    cache_hit: bool
    worker_id: str
    worker_type: str
    model_used: str | None = None
    generation_time: float | None = None
    tokens_generated: int | None = None
    prompt_tokens: int | None = None
    prompt_sha256: str | None = None
    token_limit: int
    attempts: int
    gateway_latency_ms: float


class EnhanceResponse(BaseModel):
    success: bool = True
    original_prompt: str
    enhanced_prompt: str
    request_id: str
    execution_metadata: ExecutionMetadata
