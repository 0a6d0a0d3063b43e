"""Queue mode: the worker pulls jobs from Redis Streams (`--queue redis://...`), beside its HTTP
routes or instead of them (`--no-http`, for workers behind NAT).

Each job is the worker call the gateway built (`work`: path, payload, model). It runs through
this worker's own app, in process, as an ASGI request: the same middleware, validation and
admission gate (api/admission.py) as an HTTP caller's, so HTTP and queue work share one limit.
While a job runs, its delivery is heartbeated (the visibility timeout never passes for a live
worker) and its cancel key watched; a cancel request disconnects the in-process request, which
cancels the engine work within one step or token, as a disconnecting HTTP client does. An image
job runs with `stream: true` when the worker offers progress, and its `progress` events become
job events.

Results: `JobQueue.complete` stores the terminal event once per job (a re-delivered job that
ran twice is recorded once) and only then acknowledges the delivery; the gateways store the
events in SQL. A job refused for capacity (503) is handed back at once for another worker.

SIGTERM drains: no new jobs are claimed, running ones finish within --drain-timeout-s; a job
still running when the worker stops is handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pureinfer.queue.base import Delivery, Event
from pureinfer.queue.redis_streams import RedisStreamsQueue
from pureinfer.security import sign
from pureinfer.settings import WorkerSettings
from pureinfer.worker.runtime import WorkerRuntime
from pureinfer.worker.state import WorkerState

log = logging.getLogger("pureinfer.worker.queue")
POLL_S = 0.2
CAPACITY_CODES = {"WORKER_OVERLOADED", "WORKER_UNAVAILABLE"}


def worker_types(role: str) -> list[str]:
    return {"chat": ["chat"], "image": ["image"], "all": ["chat", "image"]}[role]


async def call_app(app: Any, path: str, body: bytes, headers: dict[str, str], disconnect: asyncio.Event,
                   on_chunk: Callable[[bytes], Awaitable[None]] | None = None) -> tuple[int, bytes]:
    """POST `body` to `app` in process. `disconnect` set = the client went away (http.disconnect)."""
    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 0), "server": ("queue", 0), "state": {}}
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    status = 500
    chunks: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            chunks.append(chunk)
            if on_chunk is not None and chunk:
                await on_chunk(chunk)

    await app(scope, receive, send)
    return status, b"".join(chunks)


class QueueWorker:
    def __init__(self, app: Any, runtime: WorkerRuntime, settings: WorkerSettings) -> None:
        assert settings.queue
        self.app = app
        self.runtime = runtime
        self.settings = settings
        self.queue = RedisStreamsQueue(settings.queue, prefix=settings.queue_prefix,
                                       visibility_timeout_s=settings.queue_visibility_timeout_s,
                                       max_attempts=settings.queue_max_attempts, retry_for_s=5.0)
        self.types = worker_types(settings.role.value)
        self.consumer = f"w-{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    def _headers(self, path: str, body: bytes, request_id: str) -> dict[str, str]:
        """What an HTTP caller of this worker sends: its key and signature, when it wants them."""
        h = {"content-type": "application/json", "x-request-id": request_id}
        if not self.settings.no_http:
            # Local image URLs are built from the Host the request came in on: this worker's own.
            h["host"] = f"{self.settings.host}:{self.settings.port}"
        if self.settings.api_keys:
            h["authorization"] = f"Bearer {self.settings.api_keys[0]}"
        if self.settings.signing_secret:
            h |= {k.lower(): v for k, v in sign(self.settings.signing_secret, "POST", path, body).items()}
        return h

    def _payload(self, work: dict[str, Any]) -> dict[str, Any]:
        payload = dict(work["payload"])
        model = work.get("model")
        served = set(self.runtime.text.engines) if self.runtime.text is not None else set()
        if model and model in served:
            payload["model"] = model  # as the gateway's client does: only a model this worker serves
        return payload

    async def run(self) -> None:
        log.info("queue mode", extra={"event": "queue_mode", "worker_types": self.types, "consumer": self.consumer,
                                      "queue": self.settings.queue.split("@")[-1] if self.settings.queue else None,
                                      "concurrency": self.settings.queue_concurrency})
        try:
            await asyncio.gather(*(self._slot() for _ in range(self.settings.queue_concurrency)))
        finally:
            with contextlib.suppress(Exception):
                await self.queue.close()

    async def _slot(self) -> None:
        backoff = 0.1
        while True:
            state = self.runtime.lifecycle.state
            if state.is_terminal() or state == WorkerState.DRAINING:
                return  # draining: no new jobs
            if state != WorkerState.READY:
                await asyncio.sleep(POLL_S)
                continue
            try:
                d = await self.queue.claim(self.types, self.consumer, block_s=1.0)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("queue unreachable; retrying", extra={"event": "queue_unreachable"}, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if d is not None:
                await self._run(d)

    async def _run(self, d: Delivery) -> None:
        if await self.queue.cancel_requested(d.job_id):
            await self.queue.complete(d, "cancelled", {"worker_id": self.consumer})
            return
        await self.queue.publish(Event(d.job_id, "started", {"attempt": d.attempt, "worker_id": self.consumer,
                                                             "at": time.time()}))
        disconnect = asyncio.Event()
        task = asyncio.create_task(self._execute(d, disconnect))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=POLL_S)
                if task.done():
                    break
                await self.queue.heartbeat(d, self.consumer)
                if await self.queue.cancel_requested(d.job_id):
                    disconnect.set()  # the request is cancelled within one engine step
                    with contextlib.suppress(BaseException):
                        await task
                    await self.queue.complete(d, "cancelled", {"worker_id": self.consumer})
                    log.info("job cancelled", extra={"event": "job_cancelled", "job_id": d.job_id})
                    return
        except BaseException:
            # Stopping (SIGTERM past the drain, or the loop going away): hand the job back.
            disconnect.set()
            task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.shield(self.queue.release(d))
            raise
        status, body = task.result()
        await self._settle(d, status, body)

    async def _settle(self, d: Delivery, status: int, body: bytes) -> None:
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        if 200 <= status < 300:
            await self.queue.complete(d, "succeeded", {"response": data, "worker_id": self.consumer,
                                                       "worker_type": self.settings.role.value})
            return
        code = data.get("error_code") if isinstance(data, dict) else None
        if code in CAPACITY_CODES:
            await self.queue.release(d)  # not run: another worker (or this one, later) takes it
            await asyncio.sleep(0.2)
            return
        error = data if isinstance(data, dict) and code else {
            "success": False, "error": f"The worker answered HTTP {status}", "error_code": "INTERNAL_ERROR",
            "details": {"worker_status": status}, "request_id": d.work.get("request_id")}
        await self.queue.complete(d, "failed", {"error": error, "worker_id": self.consumer})

    async def _execute(self, d: Delivery, disconnect: asyncio.Event) -> tuple[int, bytes]:
        path = d.work["path"]
        payload = self._payload(d.work)
        progress = d.worker_type == "image" and payload.get("stream") is True
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = self._headers(path, body, d.work.get("request_id") or d.job_id)
        if not progress:
            return await call_app(self.app, path, body, headers, disconnect)
        return await self._execute_streamed(d, path, body, headers, disconnect)

    async def _execute_streamed(self, d: Delivery, path: str, body: bytes, headers: dict[str, str],
                                disconnect: asyncio.Event) -> tuple[int, bytes]:
        """An image job with progress: `progress` events are published, the final event is the
        result (or the error)."""
        pending = b""
        final: dict[str, Any] | None = None

        async def on_chunk(chunk: bytes) -> None:
            nonlocal pending, final
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if not line.startswith(b"data:"):
                    continue
                try:
                    ev = json.loads(line[5:])
                except ValueError:
                    continue
                if not isinstance(ev, dict):
                    continue
                p = ev.get("progress")
                if isinstance(p, dict):
                    await self.queue.publish(Event(d.job_id, "progress", {"step": p.get("step"),
                                                                          "total": p.get("total")}))
                else:
                    final = ev
        status, raw = await call_app(self.app, path, body, headers, disconnect, on_chunk)
        if status >= 300 or final is None:
            return status, raw
        if final.get("error_code") or isinstance(final.get("error"), dict):
            err = final["error"] if isinstance(final.get("error"), dict) else final
            return 500, json.dumps(err).encode()
        return status, json.dumps(final).encode()
