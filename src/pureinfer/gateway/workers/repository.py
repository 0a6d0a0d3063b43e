"""SQL access for the worker registry (synchronous; called from a thread)."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from pureinfer.db.models import WorkerRecord, utcnow
from pureinfer.errors import NotFound


def worker_id_for(url: str) -> str:
    """Stable id from the URL: a worker that registers again keeps its id."""
    return "w-" + hashlib.sha256(url.encode()).hexdigest()[:12]


def upsert(s: Session, url: str, worker_type: str, models: list[str], source: str,
           info: dict[str, Any] | None = None, heartbeat: bool = False) -> WorkerRecord:
    wid = worker_id_for(url)
    row = s.get(WorkerRecord, wid)
    if row is None:
        row = WorkerRecord(id=wid, url=url, worker_type=worker_type, models=models, source=source,
                           info=info or {}, created_at=utcnow())
        s.add(row)
    else:
        row.worker_type, row.models, row.source = worker_type, models, source
        if info is not None:
            row.info = info
    if heartbeat:
        row.last_heartbeat = utcnow()
    s.flush()
    return row


def heartbeat(s: Session, wid: str) -> None:
    row = s.get(WorkerRecord, wid)
    if row is None:
        raise NotFound(f"Worker {wid!r} is not registered", {"worker_id": wid},
                       suggested_action="Register again")
    row.last_heartbeat = utcnow()


def remove(s: Session, wid: str) -> None:
    if s.execute(delete(WorkerRecord).where(WorkerRecord.id == wid)).rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"Worker {wid!r} not found", {"worker_id": wid})


def all_workers(s: Session) -> list[WorkerRecord]:
    return list(s.execute(select(WorkerRecord).order_by(WorkerRecord.created_at)).scalars())
