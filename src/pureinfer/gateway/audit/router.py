"""`GET /audit` (admin): filters, newest first. Each filter is bounded to what a stored row can
hold (gateway/bounds.py), so no value reaches SQL that the store would fail on."""

from __future__ import annotations

from datetime import datetime

import anyio
from fastapi import APIRouter, Depends, Query, Request

from pureinfer.db.store import as_utc
from pureinfer.gateway.audit import repository as repo
from pureinfer.gateway.audit.protocol import AuditOut, AuditPage
from pureinfer.gateway.auth import admin_dep
from pureinfer.gateway.bounds import (
    CODE_PATTERN,
    KEY_ID_PATTERN,
    MAX_SQL_BIGINT,
    REQUEST_ID_PATTERN,
    WORKER_ID_PATTERN,
)
from pureinfer.gateway.templates.protocol import NAME_PATTERN

router = APIRouter(tags=["audit"], dependencies=[Depends(admin_dep)])


@router.get("/audit", response_model=AuditPage)
async def list_audit(request: Request,
                     request_id: str | None = Query(None, pattern=REQUEST_ID_PATTERN),
                     endpoint: str | None = Query(None, pattern=CODE_PATTERN),
                     status: int | None = Query(None, ge=100, le=599),
                     error_code: str | None = Query(None, pattern=CODE_PATTERN),
                     template_name: str | None = Query(None, pattern=NAME_PATTERN),
                     worker_id: str | None = Query(None, pattern=WORKER_ID_PATTERN),
                     caller_key_id: str | None = Query(None, pattern=KEY_ID_PATTERN),
                     since: datetime | None = None, until: datetime | None = None,
                     limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_SQL_BIGINT)) -> AuditPage:
    gw = request.app.state.gateway
    filters = {"request_id": request_id, "endpoint": endpoint, "status": status, "error_code": error_code,
               "template_name": template_name, "worker_id": worker_id, "caller_key_id": caller_key_id}

    def run() -> list[AuditOut]:
        with gw.store.session() as s:
            rows = repo.query(s, filters, since, until, limit, offset)
            return [AuditOut.model_validate({f: getattr(r, f) for f in AuditOut.model_fields}
                                            | {"created_at": as_utc(r.created_at)}) for r in rows]
    records = await anyio.to_thread.run_sync(run)
    return AuditPage(records=records, count=len(records), writer=gw.audit.status())
