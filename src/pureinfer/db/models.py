"""SQL models of the gateway: templates (immutable versions + movable labels), the template
generation counter, the worker registry and the audit trail.

These are storage rows, not wire formats: the gateway's `protocol.py` modules define what
callers see. The migrations in `migrations/versions/` create exactly these tables; a test checks
that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, list[int]: JSON}


class TemplateVersion(Base):
    """One immutable version of a template family (`template_name`). Only `is_active` changes
    after insert (deactivation); any content change is a new row with `version + 1`."""

    __tablename__ = "template_versions"
    __table_args__ = (
        UniqueConstraint("template_name", "version", name="uq_template_name_version"),
        Index("ix_template_selection", "target_model", "job_type", "use_case", "content_mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    template_name: Mapped[str] = mapped_column(String(200), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    enhancer_model: Mapped[str] = mapped_column(String(100), nullable=False)
    target_model: Mapped[str] = mapped_column(String(100), nullable=False)
    job_type: Mapped[str] = mapped_column(String(50), nullable=False)
    use_case: Mapped[str] = mapped_column(String(50), nullable=False)
    content_mode: Mapped[str] = mapped_column(String(20), nullable=False)
    system_prompt: Mapped[str] = mapped_column(Text, nullable=False)
    token_limit: Mapped[int] = mapped_column(Integer, nullable=False)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class TemplateLabel(Base):
    """A movable pointer (`production`, `latest`, or any custom name) at one version of a family.
    A rollback is an UPDATE of `version` here; versions themselves never change."""

    __tablename__ = "template_labels"

    template_name: Mapped[str] = mapped_column(String(200), primary_key=True)
    label: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)


class TemplateGeneration(Base):
    """A single row (id = 1) whose counter is incremented *in SQL* (`generation = generation + 1`)
    inside every transaction that changes templates or labels. Gateway processes compare it with
    the generation of their in-memory cache on each selection: the change and the bump commit
    together, so no process can see one without the other."""

    __tablename__ = "template_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class WorkerRecord(Base):
    """A worker known to the gateway: self-registered (with heartbeats) or added by an admin.
    Health, load and circuit state are per gateway process and live in memory, not here."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(500), nullable=False, unique=True)
    worker_type: Mapped[str] = mapped_column(String(20), nullable=False)
    models: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    source: Mapped[str] = mapped_column(String(20), nullable=False)  # registered | admin
    info: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, default=utcnow)
    last_heartbeat: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditRecord(Base):
    """One prompt interaction, success or failure. `id` is made by the gateway (uuid4 hex) so a
    record replayed from the spill file is recognised and never stored twice.

    Enough to check and reproduce it: the template version, the model, the sampling parameters
    with the seed the worker used, the hash of the messages the gateway sent beside the worker's
    hash of the prompt it rendered from them, the hash of the response, the attempts; previews of
    the prompt and response, or with `--audit-prompts full` the messages and the response whole.
    For images: the parameters, the seeds actually used, the asset URLs and the timings."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_created_at", "created_at"),
        Index("ix_audit_request_id", "request_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False)
    endpoint: Mapped[str] = mapped_column(String(50), nullable=False)
    caller_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    template_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    template_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fallback_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cache_hit: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    messages_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    prompt_preview: Mapped[str | None] = mapped_column(Text, nullable=True)
    response_preview: Mapped[str | None] = mapped_column(Text, nullable=True)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tokens_generated: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    error_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Revision 0002:
    model_used: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sampling: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # max_tokens, temperature, top_p, seed
    prompt_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the worker's, of the rendered prompt
    response_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    strategy: Mapped[str | None] = mapped_column(String(300), nullable=True)
    messages: Mapped[list[dict[str, str]] | None] = mapped_column(JSON, nullable=True)  # --audit-prompts full
    response_text: Mapped[str | None] = mapped_column(Text, nullable=True)  # --audit-prompts full
    # Revision 0003 (image requests; worker_type for every request):
    worker_type: Mapped[str | None] = mapped_column(String(20), nullable=True)  # the type that served it
    image_params: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # width, height, steps, ...
    seeds: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)  # one per image, as used
    asset_urls: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # generation_time, enhance_ms, ...


class JobRecord(Base):
    """An asynchronous job (POST /jobs). `status` holds a `queue.status.JobStatus` value and
    changes only through the repository's guarded updates (the state machine, checked in SQL:
    `WHERE status IN (allowed predecessors)`), so two gateways applying the same event store it
    once. `idempotency_key` is unique: one key never makes two jobs, whichever gateway takes it
    (it holds the caller's key id and the caller's Idempotency-Key together)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    type: Mapped[str] = mapped_column(String(20), nullable=False)  # image | text | enhance
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    worker_type: Mapped[str] = mapped_column(String(20), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # as the caller sent them
    work: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)  # the worker call: path, payload, model
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)  # template, strategy
    callback_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(300), nullable=True, unique=True)
    request_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    caller_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    request_id: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    progress_step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress_total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # the error envelope
    webhook_attempts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False, default=list)


__all__ = [
    "AuditRecord", "Base", "JobRecord", "TemplateGeneration", "TemplateLabel", "TemplateVersion",
    "WorkerRecord", "utcnow",
]
