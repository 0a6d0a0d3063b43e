"""Images through the gateway: optional enhancement, a healthy image worker, progress, the audit row.

The API other parts call (the routes here, the jobs of gateway/jobs):

    service = gateway.images                         # an ImageService, one per app
    result = await service.generate(
        request,                                     # GenerateImageRequest (protocol.py): validated
        request_id="...",                            # goes to the worker (X-Request-ID) and the audit
        caller_key_id=None,                          # the caller's key id, for the audit row
        endpoint="generate-image",                   # the audit row's endpoint name
        on_progress=None,                            # (step, total) -> None | awaitable, see below
        cancel=None,                                 # asyncio.Event: set it to stop the generation
    )                                                # -> dict, GenerateImageResponse's shape

What `generate` does, in order:
1. with `enhance: true`, runs the prompt through `PromptingService.enhance` (its own audit row,
   endpoint `enhance-prompt`, same request id); the image is drawn from the enhanced prompt;
2. POSTs the worker's image `/generate` with `stream: true` to a healthy worker of type `image`
   or `all`, through `WorkerClient.post`: signed, retried with backoff on connection errors and
   503 before the stream begins, the per-worker circuit breaker, failover;
3. reads the worker's SSE: each `{"progress": {"step", "total"}}` event is handed to
   `on_progress(step, total)` (awaited when it returns an awaitable; steps 1..total in order,
   total = the request's steps; a failing handler is logged and ignored), the final event is
   the response, an `{"error": envelope}` event raises the worker's coded error;
4. answers the worker's response plus the gateway's fields (`original_prompt`, `prompt_used`,
   `enhancement`, `execution_metadata.worker_id/attempts/gateway_latency_ms`, `request_id`);
5. records one audit row (`worker_type`, `image_params`, `seeds`, `asset_urls`, `timings`, the
   template of the enhancement, attempts, latency) in every path, failures included.

Cancelling: setting `cancel` (or cancelling the awaiting task) closes the worker stream; the
worker notices the disconnect and stops the generation between two denoising steps. A set
`cancel` raises `ImageCancelled` (audit: status 499, `CANCELLED`); a cancelled task re-raises
`CancelledError` (audit: 499, `CLIENT_DISCONNECTED`).

Errors: INVALID_PAYLOAD with field details (protocol.py, or the worker's own, passed through),
the worker's codes (TOKEN_LIMIT_EXCEEDED, OUT_OF_MEMORY, WORKER_OVERLOADED...) unchanged,
WORKER_UNAVAILABLE when no image worker is healthy, WORKER_TIMEOUT past the request deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from pureinfer.errors import (
    InternalError,
    PureInferError,
    WorkerTimeout,
    WorkerUnavailable,
    as_pureinfer_error,
    from_envelope,
)
from pureinfer.gateway.audit.writer import AuditWriter
from pureinfer.gateway.bounds import MAX_SQL_BIGINT
from pureinfer.gateway.images.protocol import Enhancement, GenerateImageRequest, GenerateImageResponse
from pureinfer.gateway.prompting.protocol import EnhanceRequest
from pureinfer.gateway.prompting.service import PromptingService
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.gateway.workers.client import WorkerCall, WorkerClient, sse_lines

log = logging.getLogger("pureinfer.gateway.images")

WORKER_TYPE = "image"  # served by workers of type image or all (registry.WorkerState.serves)

ProgressHandler = Callable[[int, int], Awaitable[None] | None]


class ImageCancelled(Exception):
    """`cancel` was set: the worker stream was closed and the worker stops between two steps."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _seed(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SQL_BIGINT else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class ImageInteraction:
    """What one image request learned so far; becomes the audit entry whatever happens."""

    endpoint: str
    request_id: str
    caller_key_id: str | None
    req: GenerateImageRequest
    started: float = field(default_factory=time.perf_counter)
    prompt_used: str | None = None
    enhancement: Enhancement | None = None
    enhance_cache_hit: bool | None = None
    enhance_ms: float | None = None
    call: WorkerCall | None = None
    worker_id: str | None = None  # the last worker tried, when the call failed
    attempts: int | None = None
    steps_seen: int = 0
    response: dict[str, Any] | None = None
    audited: bool = True

    def latency_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)


class ImageService:
    """See the module docstring. Given exactly the parts it uses."""

    def __init__(self, client: WorkerClient, prompting: PromptingService, audit: AuditWriter,
                 settings: GatewaySettings) -> None:
        self.client = client
        self.prompting = prompting
        self.audit = audit
        self.settings = settings

    async def generate(self, req: GenerateImageRequest, *, request_id: str, caller_key_id: str | None = None,
                       endpoint: str = "generate-image", on_progress: ProgressHandler | None = None,
                       cancel: asyncio.Event | None = None, audit: bool = True) -> dict[str, Any]:
        """`audit=False`: no audit row here, its caller writes one (an image job's row is written
        by the gateway that stores the job's end, gateway/jobs/audit.py)."""
        it = ImageInteraction(endpoint, request_id, caller_key_id, req, audited=audit)
        work = asyncio.ensure_future(self._run(it, on_progress))
        stop = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        try:
            await asyncio.wait([f for f in (work, stop) if f is not None], return_when=asyncio.FIRST_COMPLETED)
            if not work.done():  # cancel was set first: closing the stream stops the worker
                work.cancel()
                with contextlib.suppress(BaseException):
                    await work
                self.record(it, 499, "CANCELLED")
                log.info("image request cancelled", extra={"event": "image_cancelled", "steps_seen": it.steps_seen})
                raise ImageCancelled("The image generation was cancelled")
            out = work.result()
        except asyncio.CancelledError:
            work.cancel()
            with contextlib.suppress(BaseException):
                await work
            self.record(it, 499, "CLIENT_DISCONNECTED")
            raise
        except ImageCancelled:
            raise
        except Exception as exc:
            raise self._failed(it, exc) from None
        finally:
            if stop is not None:
                stop.cancel()
        self.record(it, 200, None)
        return out

    # -- the steps ---------------------------------------------------------------------------------
    async def _run(self, it: ImageInteraction, on_progress: ProgressHandler | None) -> dict[str, Any]:
        req = it.req
        log.info("Image request", extra={
            "event": "image_request", "prompt": self.prompting._log_text(req.prompt, 100),
            "promptLength": len(req.prompt), "enhance": req.enhance, "width": req.width, "height": req.height,
            "steps": req.steps, "numImages": req.num_images, "scheduler": req.scheduler, "workerType": WORKER_TYPE})
        it.prompt_used = await self._enhance(it) if req.enhance else req.prompt
        payload = {**req.worker_payload(it.prompt_used), "stream": True}
        deadline = time.monotonic() + self.settings.request_timeout_s
        resp, it.call = await self.client.post(WORKER_TYPE, None, "/generate", payload, it.request_id,
                                               stream=True, deadline=deadline)
        try:
            data = await self._read(it, resp, on_progress, deadline)
        finally:
            await resp.aclose()  # before the result, or when cancelled: the worker sees the disconnect
            WorkerClient.release(it.call)
        it.response = data
        return self._answer(it, data)

    async def _enhance(self, it: ImageInteraction) -> str:
        """The enhanced prompt (the enhance-prompt service writes its own audit row)."""
        opts = it.req.enhance_options
        t0 = time.perf_counter()
        out = await self.prompting.enhance(
            EnhanceRequest(prompt=it.req.prompt, job_type="image", target_model=opts.target_model,
                           enhancer_model=opts.enhancer_model, content_mode=opts.content_mode),
            it.request_id, it.caller_key_id)
        it.enhance_ms = round((time.perf_counter() - t0) * 1000, 3)
        md = out.execution_metadata
        enhanced = out.enhanced_prompt.strip()
        it.enhancement = Enhancement(
            enhanced_prompt=enhanced or it.req.prompt, strategy=out.strategy, template_name=md.template_name,
            template_version=md.template_version, fallback_level=md.fallback_level, worker_id=md.worker_id,
            request_id=out.request_id, generation_time=md.generation_time)
        it.enhance_cache_hit = md.cache_hit
        # An enhancer that answered nothing leaves the caller's prompt: an image of it beats a refusal.
        return enhanced or it.req.prompt

    async def _read(self, it: ImageInteraction, resp: httpx.Response, on_progress: ProgressHandler | None,
                    deadline: float) -> dict[str, Any]:
        """The worker's SSE: progress to `on_progress`, the final response returned, errors raised."""
        assert it.call is not None
        worker = it.call.worker
        final: dict[str, Any] | None = None
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                async for line in sse_lines(resp):
                    if not line.startswith("data:"):
                        continue  # blank separators and ": ping" comments
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    if not isinstance(event, dict):
                        continue
                    if isinstance(event.get("error"), dict):
                        raise from_envelope(event["error"])  # the worker's code, unchanged
                    progress = event.get("progress")
                    if isinstance(progress, dict):
                        await self._progress(it, on_progress, progress)
                        continue
                    final = event
        except TimeoutError:
            raise WorkerTimeout("The request deadline passed while the image was generated",
                                {"worker_id": worker.id, "deadline_s": self.settings.request_timeout_s}) from None
        except httpx.TimeoutException:
            worker.breaker.failure()
            raise WorkerTimeout("The image worker went silent past the read timeout",
                                {"worker_id": worker.id, "read_timeout_s": self.settings.read_timeout_s}) from None
        except httpx.TransportError as exc:
            worker.breaker.failure()
            raise WorkerUnavailable("The image worker's stream broke off",
                                    {"worker_id": worker.id, "reason": type(exc).__name__}) from None
        except ValueError:
            raise InternalError("The image worker sent an event that is not JSON", {"worker_id": worker.id}) from None
        if final is None or not isinstance(final.get("images"), list):
            raise WorkerUnavailable("The image worker's stream ended without a result", {"worker_id": worker.id})
        return final

    async def _progress(self, it: ImageInteraction, on_progress: ProgressHandler | None,
                        progress: dict[str, Any]) -> None:
        step, total = progress.get("step"), progress.get("total")
        if not (isinstance(step, int) and isinstance(total, int)):
            return
        it.steps_seen = step
        if on_progress is None:
            return
        try:
            result = on_progress(step, total)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("image progress handler failed", extra={"event": "image_progress_failed"})

    def _answer(self, it: ImageInteraction, data: dict[str, Any]) -> dict[str, Any]:
        assert it.call is not None and it.prompt_used is not None
        md = data.get("execution_metadata") if isinstance(data.get("execution_metadata"), dict) else {}
        md = {"worker_type": WORKER_TYPE, **md, "worker_id": it.call.worker.id, "attempts": it.call.attempts,
              "gateway_latency_ms": it.latency_ms()}
        out = GenerateImageResponse.model_validate({
            **data, "original_prompt": it.req.prompt, "prompt_used": it.prompt_used,
            "enhancement": it.enhancement, "execution_metadata": md, "request_id": it.request_id})
        log.info("Image generated", extra={
            "event": "image_result", "workerId": it.call.worker.id, "seeds": md.get("seeds"),
            "numImages": len(out.images), "generationTime": data.get("generation_time"),
            "latencyMs": md["gateway_latency_ms"], "enhanced": it.enhancement is not None})
        return out.model_dump(exclude_none=False)

    # -- the audit row -----------------------------------------------------------------------------
    def _failed(self, it: ImageInteraction, exc: BaseException) -> PureInferError:
        err = as_pureinfer_error(exc)
        it.worker_id = getattr(exc, "worker_id", None) or it.worker_id
        it.attempts = getattr(exc, "attempts", None) or it.attempts
        self.record(it, err.http_status, err.code.value)
        if not isinstance(exc, PureInferError):
            log.error("unexpected error", exc_info=exc, extra={"event": "gateway_error"})
        log.warning("image request failed", extra={"event": "image_failed", "error_code": err.code.value,
                                                   "error": err.message})
        return err

    def record(self, it: ImageInteraction, status: int, error_code: str | None) -> None:
        """The audit row of one image interaction (the sync routes', and each finished image job's)."""
        if not it.audited:
            return
        req, data, call, enh = it.req, it.response or {}, it.call, it.enhancement
        mode = self.settings.audit_prompts
        n = self.settings.audit_preview_chars

        def cut(text: str | None) -> str | None:
            return PromptingService._cut(text, "preview" if mode == "full" else mode, n)

        params: dict[str, Any] = req.parameters()
        for key in ("width", "height"):  # as served: the worker fills the defaults
            if isinstance(data.get(key), int):
                params[key] = data[key]
        params["negative_prompt_preview"] = cut(req.negative_prompt)
        if enh is not None:
            params["original_prompt_preview"] = cut(req.prompt)
        if mode == "full":
            params |= {"prompt": it.prompt_used or req.prompt, "negative_prompt": req.negative_prompt,
                       "original_prompt": req.prompt}
        images = [i for i in data.get("images", []) if isinstance(i, dict)]
        md = data.get("execution_metadata") if isinstance(data.get("execution_metadata"), dict) else {}
        seeds = [s for s in (_seed(i.get("seed")) for i in images) if s is not None]
        urls = [i["url"][:2000] for i in images if isinstance(i.get("url"), str)]
        timings = {"generation_time": _number(data.get("generation_time")), "queue_time": _number(md.get("queue_time")),
                   "denoise_time": _number(md.get("denoise_time")), "enhance_ms": it.enhance_ms,
                   "steps_seen": it.steps_seen or None}
        prompt_used = it.prompt_used or req.prompt
        self.audit.record({
            "id": uuid.uuid4().hex, "created_at": datetime.now(UTC), "request_id": it.request_id,
            "endpoint": it.endpoint, "caller_key_id": it.caller_key_id,
            "template_name": enh.template_name if enh else None,
            "template_version": enh.template_version if enh else None,
            "fallback_level": enh.fallback_level if enh else None,
            "cache_hit": it.enhance_cache_hit,
            "worker_id": call.worker.id if call else it.worker_id, "worker_type": WORKER_TYPE,
            "prompt_preview": cut(prompt_used), "prompt_sha256": _sha256(prompt_used),
            "model_used": data["model_used"][:200] if isinstance(data.get("model_used"), str) else None,
            "latency_ms": it.latency_ms(), "status": status, "error_code": error_code,
            "attempts": call.attempts if call else it.attempts, "strategy": enh.strategy if enh else None,
            "image_params": params, "seeds": seeds or None, "asset_urls": urls or None,
            "timings": {k: v for k, v in timings.items() if v is not None} or None,
        })
