"""Health, status, capabilities and Prometheus metrics. /health/live and /health/ready are open."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pureinfer import metrics
from pureinfer.worker.ops.serving import OpsServing


def build_ops_router(ops: OpsServing) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/health")
    async def health() -> JSONResponse:
        doc = ops.health()
        return JSONResponse(doc, status_code=200 if doc["status"] == "healthy" else 503)

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    @router.get("/health/ready")
    async def ready() -> JSONResponse:
        ok = ops.rt.ready()
        return JSONResponse({"ready": ok, "state": ops.rt.lifecycle.state.value}, status_code=200 if ok else 503)

    @router.get("/status")
    async def status() -> dict:
        return ops.status()

    @router.get("/worker/info")
    async def worker_info() -> dict:
        return ops.worker_info()

    @router.get("/metrics")
    async def prometheus() -> Response:
        if ops.rt.text is not None:
            for alias, engine in ops.rt.text.engines.items():
                metrics.RUNNING.labels(alias).set(engine.num_running)
                metrics.WAITING.labels(alias).set(engine.num_waiting)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
