"""The gateway app: `create_app(GatewaySettings(...))`.

`Gateway` holds the parts (store, template service, registry, client, audit writer) on
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
from pureinfer.gateway.access import AccessMiddleware
from pureinfer.gateway.audit.router import router as audit_router
from pureinfer.gateway.audit.writer import AuditWriter
from pureinfer.gateway.auth import GatewayAuth
from pureinfer.gateway.prompting.router import router as prompting_router
from pureinfer.gateway.prompting.service import PromptingService
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.gateway.templates.router import router as templates_router
from pureinfer.gateway.templates.service import TemplateService
from pureinfer.gateway.workers.client import WorkerClient
from pureinfer.gateway.workers.registry import WorkerRegistry
from pureinfer.gateway.workers.router import router as workers_router
from pureinfer.gateway.workers.transport import AddressPins, worker_http_client
from pureinfer.gateway.workers.urls import UrlPolicy
from pureinfer.http_errors import install_error_handlers

log = logging.getLogger("pureinfer.gateway")


class Gateway:
    """The gateway's parts, built once per app."""

    def __init__(self, settings: GatewaySettings, store: Store, http: httpx.AsyncClient, pins: AddressPins,
                 url_policy: UrlPolicy | None = None) -> None:
        self.settings = settings
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


def create_app(settings: GatewaySettings, *, url_policy: UrlPolicy | None = None,
               start_background: bool = True) -> FastAPI:
    """Build the gateway. `url_policy` lets tests inject a resolver; `start_background=False`
    leaves the health-check loop off (tests drive `registry.check_all()` themselves)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await asyncio.to_thread(open_store, settings.effective_database_url)
        pins = AddressPins()  # the registry validates worker addresses, the client connects to them only
        http = worker_http_client(pins)
        gw = Gateway(settings, store, http, pins, url_policy)
        app.state.gateway = gw
        tasks = [asyncio.create_task(gw.audit.run(), name="audit-writer")]
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
            await http.aclose()
            await asyncio.to_thread(store.dispose)

    app = FastAPI(title="pureinfer gateway", version="0.1.0", lifespan=lifespan)
    app.add_middleware(ErrorBoundary)  # an unhandled exception: the 500 envelope, the connection kept
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)  # 413 before any body is parsed
    # Outermost: the request id (on the 413 too), the access line, the audit row of a refusal.
    app.add_middleware(AccessMiddleware)

    install_error_handlers(app)  # the one envelope, as on the workers

    @app.get("/health", tags=["ops"])
    async def health(request: Request) -> dict[str, Any]:
        gw: Gateway = request.app.state.gateway
        workers = list(gw.registry.workers.values())
        return {"status": "healthy", "workers": len(workers), "healthy_workers": sum(w.healthy for w in workers),
                "audit": gw.audit.status()}

    app.include_router(prompting_router)
    app.include_router(templates_router)
    app.include_router(workers_router)
    app.include_router(audit_router)
    return app
