"""Wire models of the jobs API. A job's `params` are exactly the body of the endpoint its type
names (`enhance`: POST /enhance-prompt, the seed's camelCase included; `text`: POST /chat
without `stream`; `image`: POST /generate-image), validated by that endpoint's own model, so a
bad field is named `params.<field>`."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pureinfer.errors import InvalidPayload
from pureinfer.gateway.prompting.protocol import ChatRequest, EnhanceRequest
from pureinfer.queue.status import JobStatus

JobType = Literal["image", "text", "enhance"]


def _invalid(exc: ValidationError, prefix: str) -> InvalidPayload:
    fields = [{"field": ".".join([prefix, *(str(p) for p in e["loc"])]), "message": e["msg"]} for e in exc.errors()]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return InvalidPayload(f"Invalid request: {summary}", {"fields": fields})


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: JobType
    params: dict[str, Any] = Field(description="the body of the endpoint the type names")
    callback_url: str | None = Field(None, max_length=2000,
                                     description="POSTed the finished job, signed (Standard Webhooks)")

    def request_sha256(self) -> str:
        """What Idempotency-Key compares: the body, canonically."""
        body = json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()

    def enhance(self) -> EnhanceRequest:
        try:
            return EnhanceRequest.model_validate(self.params)
        except ValidationError as exc:
            raise _invalid(exc, "params") from None

    def text(self) -> ChatRequest:
        try:
            req = ChatRequest.model_validate(self.params)
        except ValidationError as exc:
            raise _invalid(exc, "params") from None
        if req.stream:
            raise InvalidPayload.field("params.stream", "a job is not streamed: follow GET /jobs/{id}/events")
        return req

    def validated(self, model: type[BaseModel]) -> Any:
        try:
            return model.model_validate(self.params)
        except ValidationError as exc:
            raise _invalid(exc, "params") from None


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus


class Progress(BaseModel):
    step: int
    total: int


class WebhookAttempt(BaseModel):
    at: datetime
    status: int | None = Field(description="the receiver's HTTP status; null when no answer came")
    error: str | None = None
    next_retry_s: float | None = None


class WebhookState(BaseModel):
    url: str
    delivered: bool
    attempts: list[WebhookAttempt]


class JobView(BaseModel):
    job_id: str
    type: JobType
    status: JobStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress | None
    attempts: int = Field(description="deliveries to a worker")
    worker_id: str | None
    cancel_requested: bool
    result: dict[str, Any] | None
    error: dict[str, Any] | None = Field(description="the error envelope of a failed job")
    webhook: WebhookState | None
    request_id: str


class JobList(BaseModel):
    jobs: list[JobView]
    limit: int
    offset: int
