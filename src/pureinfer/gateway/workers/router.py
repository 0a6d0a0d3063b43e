"""Worker registry routes: admin (`GET/POST /workers`, `DELETE /workers/{id}`) and worker
self-registration (`POST /workers/register`, `POST /workers/{id}/heartbeat`, signed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from pureinfer.gateway.auth import admin_dep, worker_sig_dep
from pureinfer.gateway.bounds import WORKER_ID_PATTERN
from pureinfer.gateway.workers.protocol import RegistrationOut, WorkerAdd, WorkerOut, WorkerRegistration

router = APIRouter(prefix="/workers", tags=["workers"])
WorkerId = Annotated[str, Path(pattern=WORKER_ID_PATTERN)]


def _registry(request: Request):  # type: ignore[no-untyped-def]
    return request.app.state.gateway.registry


@router.get("", response_model=list[WorkerOut], dependencies=[Depends(admin_dep)])
async def list_workers(request: Request) -> list[WorkerOut]:
    await _registry(request).refresh()
    return [w.out() for w in _registry(request).workers.values()]


@router.post("", response_model=WorkerOut, status_code=201, dependencies=[Depends(admin_dep)])
async def add_worker(request: Request, body: WorkerAdd) -> WorkerOut:
    return (await _registry(request).add(body.url, body.worker_type, body.models, "admin")).out()


@router.delete("/{worker_id}", status_code=204, dependencies=[Depends(admin_dep)])
async def remove_worker(request: Request, worker_id: WorkerId) -> None:
    await _registry(request).remove(worker_id)


@router.post("/register", response_model=RegistrationOut, dependencies=[Depends(worker_sig_dep)])
async def register(request: Request, body: WorkerRegistration) -> RegistrationOut:
    st = await _registry(request).add(body.url, body.worker_type, body.models, "registered", body.info)
    return RegistrationOut(worker_id=st.id, heartbeat_s=request.app.state.gateway.settings.heartbeat_timeout_s / 4)


@router.post("/{worker_id}/heartbeat", status_code=204, dependencies=[Depends(worker_sig_dep)])
async def heartbeat(request: Request, worker_id: WorkerId) -> None:
    await _registry(request).heartbeat(worker_id)
