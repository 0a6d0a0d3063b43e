"""The gateway app: `create_app(GatewaySettings(...))`.

`Gateway` holds the parts (store, template service, registry, client, audit writer, the
prompting and image services) on
`app.state.gateway`; the lifespan opens the store (running migrations), loads the registry,
and runs the health-check and audit loops. Errors leave as the one envelope
(`errors.envelope`), with Retry-After where the error carries one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request

from pureinfer.asgi import BodyLimit, ErrorBoundary
from pureinfer.db.store import Store, open_store
from pureinfer.gateway.a1111.router import PREFIX as A1111_PREFIX
from pureinfer.gateway.a1111.router import router as a1111_router
from pureinfer.gateway.access import AccessMiddleware
from pureinfer.gateway.audit.router import router as audit_router
from pureinfer.gateway.audit.writer import AuditWriter
from pureinfer.gateway.auth import GatewayAuth
from pureinfer.gateway.images.router import router as images_router
from pureinfer.gateway.images.service import ImageService
from pureinfer.gateway.jobs.metrics import JobStats
from pureinfer.gateway.jobs.metrics import refresh as refresh_job_stats
from pureinfer.gateway.jobs.router import router as jobs_router
from pureinfer.gateway.jobs.service import JobService
from pureinfer.gateway.jobs.webhooks import WebhookSender
from pureinfer.gateway.metrics import GatewayMetrics, MetricsMiddleware, gateway_families
from pureinfer.gateway.metrics import router as metrics_router
from pureinfer.gateway.ollama.router import router as ollama_router
from pureinfer.gateway.prompting.router import router as prompting_router
from pureinfer.gateway.prompting.service import PromptingService
from pureinfer.gateway.session.router import router as session_router
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.gateway.templates.router import router as templates_router
from pureinfer.gateway.templates.service import TemplateService
from pureinfer.gateway.workers.client import WorkerClient
from pureinfer.gateway.workers.registry import WorkerRegistry
from pureinfer.gateway.workers.router import router as workers_router
from pureinfer.gateway.workers.transport import AddressPins, worker_http_client
from pureinfer.gateway.workers.urls import UrlPolicy
from pureinfer.http_errors import ErrorShapes, install_error_handlers
from pureinfer.queue import open_queue
from pureinfer.wire.a1111 import JobBoard, a1111_error

log = logging.getLogger("pureinfer.gateway")


class Gateway:
    """The gateway's parts, built once per app."""

    def __init__(self, settings: GatewaySettings, store: Store, http: httpx.AsyncClient, pins: AddressPins,
                 url_policy: UrlPolicy | None = None, metrics: GatewayMetrics | None = None,
                 webhook_policy: UrlPolicy | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()
        self.store = store
        self.http = http
        # Registration has its own secret, never the worker signing secret: a worker holding the
        # key it registers with must not hold the key that authenticates gateway->worker calls.
        self.auth = GatewayAuth(settings.api_keys, settings.admin_keys, settings.registration_secret,
                                settings.insecure)
        self.templates = TemplateService(store, default_template=settings.default_template,
                                         allow_nsfw_fallback=settings.allow_nsfw_fallback,
                                         store_timeout_s=settings.store_timeout_s)
        self.registry = WorkerRegistry(store, settings, http, url_policy or UrlPolicy(settings.worker_allowlist),
                                       pins)
        self.client = WorkerClient(self.registry, settings, http)
        self.audit = AuditWriter(store, settings.effective_spill_path, batch_size=settings.audit_batch_size,
                                 flush_interval_s=settings.audit_flush_interval_s,
                                 max_buffer=settings.audit_max_buffer, retention_days=settings.audit_retention_days,
                                 store_timeout_s=settings.store_timeout_s)
        self.prompting = PromptingService(self.templates, self.client, self.audit, settings)
        self.images = ImageService(self.client, self.prompting, self.audit, settings)
        self.a1111_jobs = JobBoard()  # txt2img jobs in flight, for A1111's progress route
        queue = open_queue(settings.queue, prefix=settings.queue_prefix,
                           visibility_timeout_s=settings.queue_visibility_timeout_s,
                           max_attempts=settings.queue_max_attempts)
        self.jobs = JobService(store, queue, self.templates, self.client, settings,
                               WebhookSender(settings, webhook_policy), self.images)


def create_app(settings: GatewaySettings, *, url_policy: UrlPolicy | None = None,
               start_background: bool = True, webhook_policy: UrlPolicy | None = None) -> FastAPI:
    """Build the gateway. `url_policy` lets tests inject a resolver; `start_background=False`
    leaves the health-check loop off (tests drive `registry.check_all()` themselves)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await asyncio.to_thread(open_store, settings.effective_database_url)
        pins = AddressPins()  # the registry validates worker addresses, the client connects to them only
        http = worker_http_client(pins)
        gw = Gateway(settings, store, http, pins, url_policy, metrics, webhook_policy)
        app.state.gateway = gw
        metrics.add_collector("gateway", lambda: gateway_families(gw.registry, gw.templates, gw.audit))
        job_stats = JobStats()
        metrics.add_collector("jobs", job_stats.families)
        tasks = [asyncio.create_task(gw.audit.run(), name="audit-writer"),
                 asyncio.create_task(refresh_job_stats(job_stats, gw.jobs), name="job-metrics"),
                 asyncio.create_task(gw.jobs.run_events(), name="job-events"),
                 asyncio.create_task(gw.jobs.run_retention(), name="job-retention")]
        if settings.queue == "memory":
            # The in-process queue: this gateway runs the jobs on its registered workers.
            requeued = await gw.jobs.requeue_unfinished()
            if requeued:
                log.info("unfinished jobs queued again", extra={"event": "jobs_requeued", "jobs": requeued})
            tasks += [asyncio.create_task(gw.jobs.run_dispatcher(), name=f"job-dispatch-{i}")
                      for i in range(settings.job_concurrency)]
        try:
            await gw.registry.refresh()
            await gw.registry.check_all()
        except Exception:
            log.warning("initial registry load failed", exc_info=True, extra={"event": "registry_error"})
        if start_background:
            tasks.append(asyncio.create_task(gw.registry.run(), name="worker-health"))
        log.info("gateway started", extra={"event": "gateway_started", "workers": len(gw.registry.workers),
                                           "database": store.engine.url.render_as_string(hide_password=True)})
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            await gw.audit.close()
            await gw.jobs.close()
            await http.aclose()
            await asyncio.to_thread(store.dispose)

    metrics = GatewayMetrics()  # this app's own registry (metrics.py)
    app = FastAPI(title="pureinfer gateway", version="0.1.0", lifespan=lifespan)
    app.state.metrics = metrics
    shapes = ErrorShapes({A1111_PREFIX + "/": a1111_error})  # A1111's error shape on A1111's paths
    app.add_middleware(ErrorBoundary, shapes=shapes)  # an unhandled exception: the 500 envelope, the connection kept
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # 413 before any body is parsed
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outside the body limit: 413s are counted
    # Outermost: the request id (on the 413 too), the access line, the audit row of a refusal.
    app.add_middleware(AccessMiddleware)

    install_error_handlers(app, shapes)  # the one envelope, as on the workers

    @app.get("/health", tags=["ops"])
    async def health(request: Request) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        workers = list(gw.registry.workers.values())
        return {"status": "healthy", "workers": len(workers), "healthy_workers": sum(w.healthy for w in workers),
                "audit": gw.audit.status()}

    app.include_router(prompting_router)
    app.include_router(images_router)
    app.include_router(ollama_router)
    app.include_router(a1111_router)
    app.include_router(templates_router)
    app.include_router(workers_router)
    app.include_router(audit_router)
    app.include_router(jobs_router)
    app.include_router(metrics_router)
    app.include_router(session_router)
    return app
