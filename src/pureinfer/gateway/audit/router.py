"""`GET /audit` (admin): filters, newest first."""

from __future__ import annotations

from datetime import datetime

import anyio
from fastapi import APIRouter, Depends, Query, Request

from pureinfer.db.store import as_utc
from pureinfer.gateway.audit import repository as repo
from pureinfer.gateway.audit.protocol import AuditOut, AuditPage
from pureinfer.gateway.auth import admin_dep

router = APIRouter(tags=["audit"], dependencies=[Depends(admin_dep)])


@router.get("/audit", response_model=AuditPage)
async def list_audit(request: Request, request_id: str | None = None, endpoint: str | None = None,
                     status: int | None = None, error_code: str | None = None, template_name: str | None = None,
                     worker_id: str | None = None, caller_key_id: str | None = None,
                     since: datetime | None = None, until: datetime | None = None,
                     limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> AuditPage:
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
