"""SQL access for jobs (synchronous; called from a thread).

Status changes are guarded in SQL: `UPDATE ... WHERE status IN (the states allowed to become the
new one)` (queue/status.py), so a duplicate or late event, or two gateways storing the same one,
change a row once; the caller learns from the row count whether it was its change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from pureinfer.db.models import JobRecord
from pureinfer.queue.status import ALLOWED, TERMINAL, JobStatus


def insert(s: Session, row: dict[str, Any]) -> None:
    s.add(JobRecord(**row))
    s.flush()  # the unique idempotency key raises IntegrityError here


def get(s: Session, job_id: str) -> JobRecord | None:
    return s.get(JobRecord, job_id)


def by_idempotency_key(s: Session, key: str) -> JobRecord | None:
    return s.execute(select(JobRecord).where(JobRecord.idempotency_key == key)).scalar_one_or_none()


def predecessors(new: JobStatus) -> list[str]:
    return [old.value for old, allowed in ALLOWED.items() if new in allowed]


def transition(s: Session, job_id: str, new: JobStatus, values: dict[str, Any] | None = None,
               only_from: JobStatus | None = None) -> bool:
    """Move the job to `new` if the state machine allows it from where it is (and it is in
    `only_from`, when given); True if it moved."""
    sources = [only_from.value] if only_from is not None else predecessors(new)
    assert only_from is None or only_from.can_become(new)
    q = (update(JobRecord).where(JobRecord.id == job_id, JobRecord.status.in_(sources))
         .values(status=new.value, **(values or {})))
    return bool(s.execute(q).rowcount)  # type: ignore[attr-defined]


def set_progress(s: Session, job_id: str, step: int, total: int) -> bool:
    q = (update(JobRecord).where(JobRecord.id == job_id, JobRecord.status == JobStatus.RUNNING.value)
         .values(progress_step=step, progress_total=total))
    return bool(s.execute(q).rowcount)  # type: ignore[attr-defined]


def mark_cancel_requested(s: Session, job_id: str) -> bool:
    q = (update(JobRecord).where(JobRecord.id == job_id, JobRecord.status.notin_([t.value for t in TERMINAL]))
         .values(cancel_requested=True))
    return bool(s.execute(q).rowcount)  # type: ignore[attr-defined]


def append_webhook_attempt(s: Session, job_id: str, attempt: dict[str, Any]) -> None:
    row = s.execute(select(JobRecord).where(JobRecord.id == job_id).with_for_update()).scalar_one_or_none()
    if row is not None:
        row.webhook_attempts = [*(row.webhook_attempts or []), attempt]


def unfinished(s: Session) -> list[JobRecord]:
    return list(s.execute(select(JobRecord).where(JobRecord.status.notin_([t.value for t in TERMINAL]))
                          .order_by(JobRecord.created_at)).scalars())


ALL_CALLERS = object()


def query(s: Session, filters: dict[str, Any], since: datetime | None, until: datetime | None,
          limit: int, offset: int, caller_key_id: Any = ALL_CALLERS) -> list[JobRecord]:
    """`caller_key_id`: only that caller's jobs (None included: the jobs submitted without a key)."""
    q = select(JobRecord)
    if caller_key_id is not ALL_CALLERS:
        q = q.where(JobRecord.caller_key_id.is_(None) if caller_key_id is None
                    else JobRecord.caller_key_id == caller_key_id)
    for key, value in filters.items():
        if value is not None:
            q = q.where(getattr(JobRecord, key) == value)
    if since is not None:
        q = q.where(JobRecord.created_at >= since)
    if until is not None:
        q = q.where(JobRecord.created_at < until)
    q = q.order_by(JobRecord.created_at.desc(), JobRecord.id).limit(limit).offset(offset)
    return list(s.execute(q).scalars())


def count_by_status(s: Session) -> dict[str, int]:
    from sqlalchemy import func

    rows = s.execute(select(JobRecord.status, func.count()).group_by(JobRecord.status))
    return {status: int(n) for status, n in rows}


def delete_finished_before(s: Session, cutoff: datetime) -> int:
    """Retention: finished jobs older than the cutoff (unfinished ones are kept whatever their age)."""
    q = delete(JobRecord).where(JobRecord.status.in_([t.value for t in TERMINAL]), JobRecord.created_at < cutoff)
    return int(s.execute(q).rowcount or 0)  # type: ignore[attr-defined]
