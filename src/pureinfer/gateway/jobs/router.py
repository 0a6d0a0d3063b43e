"""Routes of the jobs API. Thin: the service does the work."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from pureinfer.gateway.auth import Owner, caller_dep, owner_dep
from pureinfer.gateway.bounds import MAX_SQL_BIGINT
from pureinfer.gateway.jobs.protocol import JobAccepted, JobCreate, JobList, JobType, JobView
from pureinfer.queue.status import JobStatus

router = APIRouter(tags=["jobs"])


@router.post("/jobs", status_code=202, response_model=JobAccepted)
async def create_job(request: Request, body: JobCreate, caller: str | None = Depends(caller_dep),
                     idempotency_key: Annotated[str | None, Header(max_length=255)] = None) -> JSONResponse:
    accepted = await request.app.state.gateway.jobs.submit(body, idempotency_key, caller, request.state.request_id)
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/jobs/{accepted.job_id}"})


@router.get("/jobs", response_model=JobList)
async def list_jobs(request: Request, owner: Owner = Depends(owner_dep),
                    status: JobStatus | None = None, type: JobType | None = None,
                    since: datetime | None = None, until: datetime | None = None,
                    limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=MAX_SQL_BIGINT)) -> JobList:
    filters = {"status": status.value if status else None, "type": type}
    return await request.app.state.gateway.jobs.list(filters, since, until, limit, offset, owner)


@router.get("/jobs/{job_id}", response_model=JobView)
async def get_job(request: Request, job_id: str, owner: Owner = Depends(owner_dep)) -> JobView:
    return await request.app.state.gateway.jobs.get(job_id, owner)


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def job_events(request: Request, job_id: str, owner: Owner = Depends(owner_dep)) -> StreamingResponse:
    jobs = request.app.state.gateway.jobs
    await jobs.get(job_id, owner)  # 404 as JSON, before the stream starts
    return StreamingResponse(jobs.stream(job_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/jobs/{job_id}/cancel", response_model=JobView)
async def cancel_job(request: Request, job_id: str, owner: Owner = Depends(owner_dep)) -> JobView:
    return await request.app.state.gateway.jobs.cancel(job_id, owner)
