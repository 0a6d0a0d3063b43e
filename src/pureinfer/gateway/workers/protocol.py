"""Wire models of the worker registry (admin API and worker self-registration)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pureinfer.gateway.bounds import StoredText

WorkerType = Literal["chat", "image", "all"]
ModelName = Annotated[StoredText, Field(min_length=1, max_length=200)]


class WorkerAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=500)
    worker_type: WorkerType = "chat"
    models: list[ModelName] = Field(default_factory=list, max_length=50)


class WorkerRegistration(BaseModel):
    """Sent (signed) by a worker started with `--gateway URL`."""

    model_config = ConfigDict(extra="ignore")

    url: str = Field(min_length=1, max_length=500)
    worker_type: WorkerType = "chat"
    models: list[ModelName] = Field(default_factory=list, max_length=50)
    info: dict[str, Any] = Field(default_factory=dict)


class RegistrationOut(BaseModel):
    worker_id: str
    heartbeat_s: float


class WorkerOut(BaseModel):
    id: str
    url: str
    worker_type: str
    models: list[str]
    source: str
    created_at: datetime | None
    last_heartbeat: datetime | None
    # This gateway process's view:
    healthy: bool
    in_flight: int
    circuit: str
    last_error: str | None
