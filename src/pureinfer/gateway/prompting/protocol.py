"""Wire models of the gateway's public endpoints. Requests convert themselves to the template
selection key and to the worker payload, so the service only orchestrates.

`/enhance-prompt` speaks the seed's edge-function contract (WORKER_API.md, "Enhanced Logging"):
the request takes the edge function's camelCase names (`jobType`, `selectedModel`) as well as
ours; the response is the seed's "worker response logging" shape at the top level plus ours.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from pureinfer.gateway.bounds import MAX_SQL_BIGINT, MAX_SQL_INT
from pureinfer.gateway.templates.protocol import SelectionKey, TemplateView


class Sampling(BaseModel):
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=MAX_SQL_BIGINT, description="the worker's range; audited as BIGINT")

    def sampling(self) -> dict[str, Any]:
        return {k: v for k, v in (("temperature", self.temperature), ("top_p", self.top_p),
                                  ("seed", self.seed)) if v is not None}


# The seed's edge function names two of our fields differently: ours -> its.
SEED_NAMES = {"job_type": "jobType", "enhancer_model": "selectedModel"}


class EnhanceRequest(Sampling):
    """The seed's `enhance-prompt` request (`prompt`, `jobType`, `format`, `quality`,
    `selectedModel`) or ours (snake_case, plus target model, content mode, use case and
    sampling). Either name of a field is taken, not both; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    prompt: str = Field(min_length=1, max_length=20_000)
    job_type: str = Field("image", min_length=1, max_length=50,
                          validation_alias=AliasChoices("job_type", "jobType"), description="also jobType")
    target_model: str = Field("sdxl", min_length=1, max_length=100)
    enhancer_model: str | None = Field(None, min_length=1, max_length=100,
                                       validation_alias=AliasChoices("enhancer_model", "selectedModel"),
                                       description="also selectedModel (the seed's name); default: the gateway's")
    content_mode: Literal["sfw", "nsfw"] = "sfw"
    use_case: str = Field("enhancement", min_length=1, max_length=50)
    quality: str | None = Field(None, max_length=50)
    format: str | None = Field(None, max_length=50)

    @model_validator(mode="before")
    @classmethod
    def _one_name_per_field(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for ours, seeds in SEED_NAMES.items():
                if ours in data and seeds in data:
                    raise ValueError(f"give {ours} or {seeds}, not both")
        return data

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
    top_k: int | None = Field(None, ge=0, le=MAX_SQL_INT, description="default: the worker's (off)")
    stop: list[str] | None = Field(None, max_length=4, description="up to 4 stop strings")
    stream: bool = False

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and any(not s or len(s) > 200 for s in value):
            raise ValueError("stop strings must be 1 to 200 characters")
        return value

    def sampling(self) -> dict[str, Any]:
        extra = {k: v for k, v in (("top_k", self.top_k), ("stop", self.stop)) if v is not None}
        return {**super().sampling(), **extra}

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


ARCHITECTURE = "pure_inference_engine"  # the seed's name for what the workers are
FALLBACK_REASONS = {0: "exact match", 1: "another enhancer model", 2: "the other content mode",
                    3: "the default template"}


def strategy_of(template_name: str, version: int, fallback_level: int) -> str:
    """How a prompt was enhanced, in words (the seed's `strategy`)."""
    return (f"template {template_name} v{version}, fallback level {fallback_level} "
            f"({FALLBACK_REASONS.get(fallback_level, 'unknown')})")


def strategy_without_template(error_code: str) -> str:
    """Why no template was applied to a request that failed."""
    if error_code == "TEMPLATE_NOT_FOUND":
        return "none: no active template on any fallback level"
    return f"none: the request failed before a template was applied ({error_code})"


class ExecutionMetadata(BaseModel):
    """The seed's `execution_metadata` (worker_type, architecture, template_name,
    fallback_level, cache_hit) and ours."""

    worker_type: str
    architecture: str = ARCHITECTURE
    template_name: str
    fallback_level: int
    cache_hit: bool
    template_version: int
    worker_id: str
    model_used: str | None = None
    generation_time: float | None = None
    tokens_generated: int | None = None
    prompt_tokens: int | None = None
    prompt_sha256: str | None = None
    seed: int | None = Field(None, description="the seed the worker used (it reports one), else the one asked for")
    token_limit: int
    attempts: int
    gateway_latency_ms: float


class EnhanceResponse(BaseModel):
    """The seed's worker-response shape at the top level, then ours."""

    success: bool = True
    enhanced_prompt: str
    generation_time: float | None
    tokens_generated: int | None
    model_used: str | None
    pure_inference: bool = Field(description="the worker's own report")
    no_prompt_overrides: bool = Field(description="the worker's own report")
    template_respected: bool = Field(description="the template's system prompt was sent unchanged, and the "
                                                 "worker did not say otherwise")
    execution_metadata: ExecutionMetadata
    original_prompt: str
    request_id: str
    strategy: str = Field(description="how the prompt was enhanced: template, version, fallback level")
