"""Builds the worker's FastAPI app for a role (chat, image, all) from the API surfaces.

Lifecycle: the app starts STARTING, loads its models in the lifespan (building the demo models
first with --demo), turns READY, and watches its engines: an engine whose loop dies turns the
worker FAILED (unready) and calls `on_fatal`, which the CLI uses to exit so a supervisor restarts
it (vLLM's launcher does the same). `drain()` is SIGTERM's first half: DRAINING refuses new work
while in-flight requests, text and image alike (both hold admission permits), finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pureinfer.api.native.router import build_text_router
from pureinfer.api.native.serving import TextLimits, TextServing
from pureinfer.asgi import ErrorBoundary
from pureinfer.engines.base import TextEngine
from pureinfer.http_errors import ErrorShapes, install_error_handlers
from pureinfer.security import ApiKeys, SignatureVerifier
from pureinfer.settings import WorkerSettings
from pureinfer.worker import threads as host_threads
from pureinfer.worker.middleware import Guard, RequestContext
from pureinfer.worker.ops.router import build_ops_router
from pureinfer.worker.ops.serving import OpsServing
from pureinfer.worker.runtime import WorkerRuntime
from pureinfer.worker.state import WorkerState

log = logging.getLogger("pureinfer.worker")

OPEN_PATHS = frozenset({"/health/live", "/health/ready"})
# Image files are capability URLs (unguessable names), fetched by browsers without our headers.
OPEN_PREFIXES = ("/files/",)
WORK_ENDPOINTS = {"/chat", "/enhance", "/generate", "/v1/chat/completions", "/v1/images/generations",
                  "/api/chat", "/api/generate", "/sdapi/v1/txt2img"}


def create_app(settings: WorkerSettings, *, text_engines: dict[str, TextEngine] | None = None,
               on_fatal: Callable[[], None] | None = None) -> FastAPI:
    """`text_engines` injects already-loaded engines (tests, `pureinfer serve`); else they load here."""
    runtime = WorkerRuntime(settings)
    role = settings.role

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[Any]] = []
        try:
            await _load_models(runtime, text_engines)
            runtime.lifecycle.to(WorkerState.READY)
            log.info("worker ready", extra={"role": role.value, "models": OpsServing(runtime, []).models(),
                                            "device": runtime.device})
        except BaseException:
            runtime.lifecycle.to(WorkerState.FAILED)
            await _shutdown_engines(runtime)
            raise
        tasks.append(asyncio.create_task(_watch_engines(runtime, on_fatal), name="engine-watchdog"))
        if settings.queue:
            from pureinfer.worker.queue_mode import QueueWorker

            tasks.append(asyncio.create_task(QueueWorker(app, runtime, settings).run(), name="queue-mode"))
        if settings.gateway_url:
            from pureinfer.worker.registration import run_registration

            doc = OpsServing(runtime, _endpoints(app)).worker_info()["worker_info"]
            tasks.append(asyncio.create_task(run_registration(settings, doc), name="gateway-registration"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if not runtime.lifecycle.state.is_terminal():
                runtime.lifecycle.to(WorkerState.STOPPED)
            await _shutdown_engines(runtime)
            host_threads.unregister()

    app = FastAPI(title="pureinfer worker", version="0.1.0", lifespan=lifespan,
                  description="Pure inference: the worker runs exactly the messages it is given.")
    app.state.runtime = runtime
    shapes = _error_shapes(role.serves_images)
    install_error_handlers(app, shapes)

    if role.serves_text:
        app.include_router(build_text_router(runtime.require_text, mount_generate=(role.value == "chat")))
        from pureinfer.api.ollama.router import build_ollama_router
        from pureinfer.api.openai.router import build_openai_router

        app.include_router(build_openai_router(runtime.require_text))
        app.include_router(build_ollama_router(runtime.require_text))
    if role.serves_images:
        from pureinfer.api.a1111.router import build_a1111_router
        from pureinfer.api.image.router import build_image_router

        app.include_router(build_image_router(runtime.require_image, mount_generate=(role.value == "image")))
        app.include_router(build_a1111_router(runtime.require_image))
    if role.value == "all":
        from pureinfer.worker.generate_dispatch import build_dispatch_router

        app.include_router(build_dispatch_router(runtime))

    endpoints = _endpoints(app)
    app.include_router(build_ops_router(OpsServing(runtime, endpoints)))

    app.add_middleware(ErrorBoundary, shapes=shapes)  # an unhandled exception: the 500 envelope, the connection kept
    app.add_middleware(
        Guard, max_body_bytes=settings.max_body_bytes, keys=ApiKeys(settings.api_keys),
        verifier=SignatureVerifier(settings.signing_secret, settings.signature_max_skew_s)
        if settings.signing_secret else None,
        open_paths=OPEN_PATHS, open_prefixes=OPEN_PREFIXES, shapes=shapes,
    )
    app.add_middleware(RequestContext, endpoints=set(endpoints),
                       work_endpoints=WORK_ENDPOINTS, window=runtime.window)
    return app


def _error_shapes(serves_images: bool) -> ErrorShapes:
    """Our envelope everywhere (its `error` is the message, which is Ollama's shape too), but
    A1111's shape on A1111's paths."""
    if not serves_images:
        return ErrorShapes()
    from pureinfer.api.a1111.router import PREFIX
    from pureinfer.wire.a1111 import a1111_error

    return ErrorShapes({PREFIX + "/": a1111_error})


def _endpoints(app: FastAPI) -> list[str]:
    """Every path this worker serves (from the OpenAPI document: FastAPI nests included routers)."""
    paths = get_openapi(title=app.title, version=app.version, routes=app.routes)["paths"]
    return sorted(set(paths) | {"/health", "/health/live", "/health/ready", "/status", "/worker/info", "/metrics"})


async def _load_models(rt: WorkerRuntime, injected: dict[str, TextEngine] | None) -> None:
    from pureinfer.engines import device as dev

    s = rt.settings
    if s.demo:
        from pureinfer.engines.demo.build import ensure_demo_models

        await asyncio.to_thread(ensure_demo_models, s.demo_dir, s.role.serves_text and injected is None,
                                s.role.serves_images)
    threads = s.effective_threads()
    dev.set_threads(threads)
    host_threads.check_host(threads)  # warns when the workers of this host oversubscribe its cores
    rt.device = await asyncio.to_thread(dev.pick_device, s.device)
    rt.dtype = str(await asyncio.to_thread(dev.pick_dtype, s.dtype, rt.device)).removeprefix("torch.")
    limits = TextLimits(s.max_tokens_limit, s.request_timeout_s, s.log_prompts)
    # Memory is planned in this order: every model loads, the image engine warms up (its peak is
    # measured), then each text engine plans its KV cache in what is left of the budget.
    engines: dict[str, TextEngine] = {}
    image_engine = None
    if s.role.serves_text:
        engines = injected if injected is not None else await _load_text_engines(
            rt, image_reserve=lambda: getattr(image_engine, "warmup_peak_bytes", 0))
    if s.role.serves_images:
        from pureinfer.api.image.serving import ImageServing
        from pureinfer.engines.image.sdxl import load_image_engine
        from pureinfer.storage import build_object_store

        image_engine = await asyncio.to_thread(load_image_engine, s)
        rt.image = ImageServing(image_engine, build_object_store(s), s, rt.admission)  # shut down with the worker from here on
        await image_engine.start()
    if s.role.serves_text:
        rt.text = TextServing(engines, rt.admission, limits)
        for engine in engines.values():
            await engine.start()


async def _load_text_engines(rt: WorkerRuntime, image_reserve: Callable[[], int]) -> dict[str, TextEngine]:
    from pureinfer.engines.text.engine import load_text_engine

    s = rt.settings
    specs = s.text_model_specs(cuda=(rt.device or "cpu").startswith("cuda"))
    aliases = [a for a, _ in specs]
    if len(set(aliases)) != len(aliases):
        raise ValueError(f"duplicate model aliases in --text-model: {aliases}; name them ALIAS=PATH")
    engines: dict[str, TextEngine] = {}
    for alias, path in specs:
        t = time.monotonic()
        engines[alias] = await asyncio.to_thread(
            load_text_engine, path, device=rt.device, dtype=s.dtype,
            max_running=s.max_running_requests, max_waiting=s.max_queued_requests,
            max_step_tokens=s.prefill_chunk_tokens, gpu_memory_fraction=s.gpu_memory_fraction,
            kv_reserve_bytes=image_reserve, kv_share=len(specs))
        log.info("text model loaded", extra={"model": alias, "source": path, "seconds": round(time.monotonic() - t, 2)})
    return engines


async def _shutdown_engines(rt: WorkerRuntime) -> None:
    if rt.text is not None:
        for engine in rt.text.engines.values():
            with contextlib.suppress(Exception):
                await engine.shutdown()
    if rt.image is not None:
        with contextlib.suppress(Exception):
            await rt.image.shutdown()


async def _watch_engines(rt: WorkerRuntime, on_fatal: Callable[[], None] | None, every_s: float = 1.0) -> None:
    while rt.lifecycle.state in (WorkerState.READY, WorkerState.DRAINING):
        if not rt.engines_alive():
            log.error("an engine died; the worker is no longer ready")
            rt.lifecycle.to(WorkerState.FAILED)
            if on_fatal is not None:
                on_fatal()
            return
        await asyncio.sleep(every_s)


async def drain(rt: WorkerRuntime, timeout_s: float) -> int:
    """Stop admitting (readiness false, new requests 503) and wait for in-flight work, text and
    image, to finish. Returns how many requests were still in flight when the timeout passed:
    exiting now cuts them, so the caller exits non-zero (0: everything finished)."""
    if rt.lifecycle.state == WorkerState.READY:
        rt.lifecycle.to(WorkerState.DRAINING)
    deadline = time.monotonic() + timeout_s
    while rt.admission.in_flight > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    left = rt.admission.in_flight
    if left:
        log.error("drain timed out: exiting with requests in flight, which are cut",
                  extra={"requests_cut": left, "in_flight_by_kind": dict(rt.admission.counts),
                         "drain_timeout_s": timeout_s})
    else:
        log.info("drained", extra={"in_flight_left": 0})
    return left
