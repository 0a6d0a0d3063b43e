"""SQL access for audit records (synchronous; called from a thread)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from pureinfer.db.models import AuditRecord


def insert_new(s: Session, entries: list[dict[str, Any]]) -> int:
    """Insert the entries whose id is not stored yet (a replayed spill file may repeat some)."""
    if not entries:
        return 0
    ids = [e["id"] for e in entries]
    existing = set(s.execute(select(AuditRecord.id).where(AuditRecord.id.in_(ids))).scalars())
    fresh = [e for e in entries if e["id"] not in existing]
    if fresh:
        s.execute(insert(AuditRecord), fresh)
    return len(fresh)


def query(s: Session, filters: dict[str, Any], since: datetime | None, until: datetime | None,
          limit: int, offset: int) -> list[AuditRecord]:
    q = select(AuditRecord)
    for key, value in filters.items():
        if value is not None:
            q = q.where(getattr(AuditRecord, key) == value)
    if since is not None:
        q = q.where(AuditRecord.created_at >= since)
    if until is not None:
        q = q.where(AuditRecord.created_at < until)
    q = q.order_by(AuditRecord.created_at.desc(), AuditRecord.id).limit(limit).offset(offset)
    return list(s.execute(q).scalars())


def delete_older_than(s: Session, cutoff: datetime) -> int:
    return int(s.execute(delete(AuditRecord).where(AuditRecord.created_at < cutoff)).rowcount or 0)  # type: ignore[attr-defined]
