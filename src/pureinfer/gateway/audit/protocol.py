"""Wire models of the audit API and the entry the services record."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

# The columns of one audit entry, as the services fill them (all but id/created_at optional).
ENTRY_FIELDS = (
    "id", "created_at", "request_id", "endpoint", "caller_key_id", "template_name", "template_version",
    "fallback_level", "cache_hit", "worker_id", "messages_sha256", "prompt_preview", "response_preview",
    "prompt_tokens", "tokens_generated", "latency_ms", "status", "error_code",
    "model_used", "sampling", "prompt_sha256", "response_sha256", "attempts", "strategy", "messages",
    "response_text", "worker_type", "image_params", "seeds", "asset_urls", "timings",
)


class AuditOut(BaseModel):
    id: str
    created_at: datetime
    request_id: str
    endpoint: str
    caller_key_id: str | None
    template_name: str | None
    template_version: int | None
    fallback_level: int | None
    cache_hit: bool | None
    worker_id: str | None
    messages_sha256: str | None
    prompt_preview: str | None
    response_preview: str | None
    prompt_tokens: int | None
    tokens_generated: int | None
    latency_ms: float
    status: int
    error_code: str | None
    model_used: str | None = None
    sampling: dict[str, Any] | None = Field(None, description="max_tokens, temperature, top_p and the seed used")
    prompt_sha256: str | None = Field(None, description="the worker's hash of the prompt it rendered")
    response_sha256: str | None = None
    attempts: int | None = None
    strategy: str | None = None
    messages: list[dict[str, str]] | None = Field(None, description="the exact messages sent (--audit-prompts full)")
    response_text: str | None = Field(None, description="the whole response (--audit-prompts full)")
    worker_type: str | None = Field(None, description="the worker type that served the request (text, image)")
    image_params: dict[str, Any] | None = Field(
        None, description="image requests: width, height, steps, cfg_scale, sampler, num_images, ...")
    seeds: list[int] | None = Field(None, description="image requests: the seed used for each image")
    asset_urls: list[str] | None = Field(None, description="image requests: the stored images")
    timings: dict[str, Any] | None = Field(None, description="image requests: the worker's and gateway's timings")


class AuditPage(BaseModel):
    records: list[AuditOut]
    count: int
    writer: dict[str, Any]
