"""The jobs service: submission (with Stripe-style idempotency keys), reads, cancellation, the
SSE progress feed, and the two loops that move jobs:

- the *event store* (every gateway, both queues): takes the queue's job events (started,
  progress, requeued, succeeded, failed, cancelled), stores each in SQL through the guarded
  status updates, then acknowledges it; the gateway whose update finished a job sends its
  webhook. With Redis, the gateways share one consumer group, so each event is stored once, and
  one a gateway read but never acknowledged (it died) is taken over by another.
- the *dispatcher* (memory queue only): claims jobs and runs them on the registered workers over
  HTTP through the worker client (retries, breaker, signed calls), heartbeating and watching for
  cancel requests while they run. With Redis, workers in queue mode claim the jobs themselves
  (worker/queue_mode.py) and the gateway only stores their events.

The template is selected and the messages built at submission (the gateway is the only place
prompts are assembled), so what a worker receives is exactly the worker call, `work`.
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
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from sqlalchemy.exc import IntegrityError

from pureinfer import jsonline
from pureinfer.db.models import JobRecord
from pureinfer.db.store import Store, as_utc
from pureinfer.errors import (
    InvalidPayload,
    NotFound,
    PureInferError,
    WorkerOverloaded,
    WorkerUnavailable,
    envelope,
)
from pureinfer.gateway.auth import Owner
from pureinfer.gateway.images.protocol import GenerateImageRequest
from pureinfer.gateway.images.service import ImageService
from pureinfer.gateway.jobs import repository as repo
from pureinfer.gateway.jobs.audit import record_job
from pureinfer.gateway.jobs.protocol import (
    JobAccepted,
    JobCreate,
    JobList,
    JobView,
    Progress,
    WebhookAttempt,
    WebhookState,
)
from pureinfer.gateway.jobs.webhooks import WebhookSender
from pureinfer.gateway.prompting.protocol import ARCHITECTURE, strategy_of
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.gateway.templates.service import TemplateService
from pureinfer.gateway.workers.client import WorkerClient
from pureinfer.queue.base import TERMINAL_EVENTS, Delivery, Event, JobQueue
from pureinfer.queue.status import JobStatus

log = logging.getLogger("pureinfer.gateway.jobs")
WORKER_TYPES = {"enhance": "chat", "text": "chat", "image": "image"}


def instance_id() -> str:
    return f"gw-{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class JobService:
    def __init__(self, store: Store, queue: JobQueue, templates: TemplateService, client: WorkerClient,
                 settings: GatewaySettings, webhooks: WebhookSender, images: ImageService) -> None:
        self.store = store
        self.queue = queue
        self.templates = templates
        self.client = client
        self.settings = settings
        self.webhooks = webhooks
        self.images = images
        self.consumer = instance_id()
        self._webhook_tasks: set[asyncio.Task[Any]] = set()
        # Memory queue: jobs waiting for a worker of their type, job id -> (since, tries).
        self._waiting: dict[str, tuple[float, int]] = {}

    async def _db(self, fn: Callable[..., Any], *args: Any) -> Any:
        def run() -> Any:
            with self.store.transaction() as s:
                return fn(s, *args)
        return await anyio.to_thread.run_sync(run)

    # -- submission ------------------------------------------------------------------------------
    async def _work(self, body: JobCreate, request_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The worker call and what the result needs to know of how it was made."""
        if body.type == "image":
            img: GenerateImageRequest = body.validated(GenerateImageRequest)
            if img.enhance and self.settings.queue != "memory":
                # A queue-mode worker runs exactly one worker call; enhancing first is the gateway's.
                raise InvalidPayload.field("params.enhance", "enhance is not available for image jobs on the "
                                                             "Redis queue: enhance with an enhance job first")
            payload = {**img.worker_payload(img.prompt), "stream": True}  # stream: progress per step
            return ({"path": "/generate", "model": None, "payload": payload, "request_id": request_id,
                     "request": img.model_dump(mode="json")}, {"original_prompt": img.prompt})
        req = body.enhance() if body.type == "enhance" else body.text()
        sel = await self.templates.select(req.key(self.settings.default_enhancer_model))
        t = sel.template
        max_tokens = t.token_limit if body.type == "enhance" else (getattr(req, "max_tokens", None) or t.token_limit)
        payload = {"messages": req.messages(t), "max_tokens": max_tokens, **req.sampling()}
        meta = {"template_name": t.template_name, "template_version": t.version,
                "fallback_level": sel.fallback_level, "cache_hit": sel.cache_hit, "token_limit": t.token_limit,
                "strategy": strategy_of(t.template_name, t.version, sel.fallback_level)}
        if body.type == "enhance":
            meta["original_prompt"] = getattr(req, "prompt", None)
        path = "/enhance" if body.type == "enhance" else "/chat"
        return {"path": path, "model": t.enhancer_model, "payload": payload, "request_id": request_id}, meta

    async def submit(self, body: JobCreate, idempotency_key: str | None, caller: str | None,
                     request_id: str) -> JobAccepted:
        sha = body.request_sha256()
        key = f"{caller or '-'}:{idempotency_key}" if idempotency_key else None
        if key is not None:
            first = await self._db(repo.by_idempotency_key, key)
            if first is not None:
                return self._replay(first, sha)
        callback = await self.webhooks.validate(body.callback_url) if body.callback_url else None
        work, meta = await self._work(body, request_id)
        job_id = uuid.uuid4().hex
        row = {"id": job_id, "type": body.type, "status": JobStatus.QUEUED.value,
               "worker_type": WORKER_TYPES[body.type], "params": body.params, "work": work, "meta": meta,
               "callback_url": callback, "idempotency_key": key, "request_sha256": sha, "caller_key_id": caller,
               "request_id": request_id, "created_at": datetime.now(UTC), "attempts": 0,
               "cancel_requested": False, "webhook_attempts": []}
        try:
            await self._db(repo.insert, row)
        except IntegrityError:
            # Another request (maybe on another gateway) took this key between our read and insert.
            first = await self._db(repo.by_idempotency_key, key) if key else None
            if first is None:
                raise
            return self._replay(first, sha)
        try:
            await self.queue.enqueue(job_id, WORKER_TYPES[body.type], work)
        except Exception as exc:
            # Not accepted after all: the row goes, so a retry with the same key starts afresh.
            await self._db(lambda s: s.delete(s.get(JobRecord, job_id)))
            raise WorkerUnavailable("The job queue is unreachable; the job was not accepted",
                                    {"queue": type(self.queue).__name__, "reason": type(exc).__name__},
                                    retry_after=2) from exc
        log.info("job accepted", extra={"event": "job_accepted", "job_id": job_id, "type": body.type,
                                        "worker_type": WORKER_TYPES[body.type]})
        return JobAccepted(job_id=job_id, status=JobStatus.QUEUED)

    @staticmethod
    def _replay(first: JobRecord, sha: str) -> JobAccepted:
        """Stripe's rule: the same key with the same body answers as the first time; with
        another body, an error naming the key."""
        if first.request_sha256 != sha:
            err = InvalidPayload(
                "This Idempotency-Key was used with a different request body",
                {"fields": [{"field": "Idempotency-Key", "message": "already used with another body"}],
                 "job_id": first.id},
                suggested_action="Use a new Idempotency-Key for a different request")
            err.http_status = 409
            raise err
        return JobAccepted(job_id=first.id, status=JobStatus.QUEUED)

    # -- reads -----------------------------------------------------------------------------------
    @staticmethod
    def view(r: JobRecord) -> JobView:
        progress = (Progress(step=r.progress_step, total=r.progress_total)
                    if r.progress_step is not None and r.progress_total is not None else None)
        webhook = None
        if r.callback_url:
            attempts = [WebhookAttempt.model_validate(a) for a in r.webhook_attempts or []]
            webhook = WebhookState(url=r.callback_url, delivered=any(a.error is None for a in attempts),
                                   attempts=attempts)
        return JobView(job_id=r.id, type=r.type, status=JobStatus(r.status),  # type: ignore[arg-type]
                       created_at=as_utc(r.created_at), started_at=as_utc(r.started_at),  # type: ignore[arg-type]
                       finished_at=as_utc(r.finished_at), progress=progress, attempts=r.attempts,
                       worker_id=r.worker_id, cancel_requested=r.cancel_requested, result=r.result, error=r.error,
                       webhook=webhook, request_id=r.request_id)

    async def get(self, job_id: str, owner: Owner | None = None) -> JobView:
        """`owner`: whose request it is (None: the gateway itself). Another caller's job is
        answered as no job at all (404), so job ids reveal nothing across callers."""
        row = await self._db(repo.get, job_id)
        if row is None or (owner is not None and not owner.may_see(row.caller_key_id)):
            raise NotFound(f"No job {job_id}", {"job_id": job_id})
        return self.view(row)

    async def list(self, filters: dict[str, Any], since: datetime | None, until: datetime | None,
                   limit: int, offset: int, owner: Owner | None = None) -> JobList:
        only = owner.key_id if owner is not None and not owner.sees_all else repo.ALL_CALLERS
        rows = await self._db(repo.query, filters, since, until, limit, offset, only)
        return JobList(jobs=[self.view(r) for r in rows], limit=limit, offset=offset)

    async def cancel(self, job_id: str, owner: Owner | None = None) -> JobView:
        """A queued job is cancelled at once; a running one is asked to stop (its worker stops
        between steps or tokens and reports `cancelled`). A finished job: 409."""
        job = await self.get(job_id, owner)
        if job.status.is_terminal():
            err = InvalidPayload(f"Job {job_id} already {job.status.value}",
                                 {"fields": [{"field": "job_id", "message": f"the job is {job.status.value}"}],
                                  "status": job.status.value},
                                 suggested_action="Nothing to cancel")
            err.http_status = 409
            raise err
        await self._db(repo.mark_cancel_requested, job_id)
        await self.queue.request_cancel(job_id)  # the worker running it, or claiming it later, sees this
        cancelled = {"finished_at": datetime.now(UTC), "error": self._cancel_envelope(job.request_id)}
        if await self._db(repo.transition, job_id, JobStatus.CANCELLED, cancelled, JobStatus.QUEUED):
            await self._finished(job_id)
        # A running job stays running until its worker stops it and reports so.
        return await self.get(job_id)

    @staticmethod
    def _cancel_envelope(request_id: str | None) -> dict[str, Any]:
        return {"success": False, "error": "The job was cancelled", "error_code": "CANCELLED", "details": None,
                "suggested_action": "Submit the job again if you still need it", "request_id": request_id}

    async def stream(self, job_id: str) -> AsyncIterator[str]:
        """SSE: the job whenever its status or progress changes, until it finishes. Read from
        SQL, so any gateway serves it whichever one stores the job's events."""
        await self.get(job_id)  # 404 before the stream starts
        last: tuple[Any, ...] | None = None
        while True:
            job = await self.get(job_id)
            now = (job.status, job.progress.step if job.progress else None)
            if now != last:
                kind = "progress" if last is not None and now[0] == last[0] else "status"
                yield f"event: {kind}\ndata: {jsonline.one_line(job.model_dump_json())}\n\n"
                last = now
            if job.status.is_terminal():
                return
            await asyncio.sleep(self.settings.job_poll_interval_s)

    # -- storing events --------------------------------------------------------------------------
    async def apply(self, ev: Event) -> None:
        """Store one event in SQL. Idempotent: repeats and late events change nothing."""
        now = datetime.now(UTC)
        d = ev.data
        if ev.kind == "started":
            # The runner's clock when it began (the queue latency is started_at - created_at),
            # not when this event happened to be stored.
            at = d.get("at")
            started = datetime.fromtimestamp(at, UTC) if isinstance(at, int | float) else now
            values = {"started_at": started, "attempts": int(d.get("attempt", 1)), "worker_id": d.get("worker_id")}
            if not await self._db(repo.transition, ev.job_id, JobStatus.RUNNING, values):
                await self._db(lambda s: s.query(JobRecord).filter(
                    JobRecord.id == ev.job_id, JobRecord.status == JobStatus.RUNNING.value).update(
                    {"attempts": values["attempts"], "worker_id": values["worker_id"]}))
        elif ev.kind == "progress":
            await self._db(repo.set_progress, ev.job_id, int(d["step"]), int(d["total"]))
        elif ev.kind == "requeued":
            await self._db(repo.transition, ev.job_id, JobStatus.QUEUED, {"worker_id": None})
        elif ev.kind in TERMINAL_EVENTS:
            await self._finish(ev, now)
        else:
            log.warning("unknown job event", extra={"event": "job_event_unknown", "kind": ev.kind})

    async def _finish(self, ev: Event, now: datetime) -> None:
        row: JobRecord | None = await self._db(repo.get, ev.job_id)
        if row is None:
            return  # deleted by retention, or never accepted
        status = {"succeeded": JobStatus.SUCCEEDED, "failed": JobStatus.FAILED,
                  "cancelled": JobStatus.CANCELLED}[ev.kind]
        values: dict[str, Any] = {"finished_at": now}
        if ev.data.get("worker_id"):
            values["worker_id"] = ev.data["worker_id"]
        if status == JobStatus.SUCCEEDED:
            values["result"] = self._result(row, ev.data)
            if row.progress_total is not None:
                values["progress_step"] = row.progress_total
        elif status == JobStatus.FAILED:
            values["error"] = ev.data.get("error") or {"success": False, "error": "The job failed",
                                                        "error_code": "INTERNAL_ERROR", "details": None,
                                                        "request_id": row.request_id}
            if ev.data.get("dead_letter"):
                values["attempts"] = int(ev.data.get("attempts", row.attempts))
        else:
            values["error"] = self._cancel_envelope(row.request_id)
        if row.status == JobStatus.QUEUED.value and status != JobStatus.FAILED:
            # Its `started` event is being stored by another gateway (or was lost): it ran.
            await self._db(repo.transition, ev.job_id, JobStatus.RUNNING, {"started_at": now})
        if await self._db(repo.transition, ev.job_id, status, values):
            log.info("job finished", extra={"event": "job_finished", "job_id": ev.job_id, "status": status.value})
            await self._finished(ev.job_id)

    def _result(self, row: JobRecord, data: dict[str, Any]) -> dict[str, Any]:
        """The worker's answer in the shape of the endpoint the job type names."""
        resp: dict[str, Any] = data.get("response") or {}
        meta = row.meta or {}
        if row.type == "image":
            return {**resp, "worker_id": data.get("worker_id")}
        execution = {"worker_type": data.get("worker_type") or row.worker_type, "architecture": ARCHITECTURE,
                     "template_name": meta.get("template_name"), "fallback_level": meta.get("fallback_level"),
                     "cache_hit": meta.get("cache_hit"), "template_version": meta.get("template_version"),
                     "worker_id": data.get("worker_id"), "model_used": resp.get("model_used"),
                     "generation_time": resp.get("generation_time"), "tokens_generated": resp.get("tokens_generated"),
                     "prompt_tokens": resp.get("prompt_tokens"), "prompt_sha256": resp.get("prompt_sha256"),
                     "seed": resp.get("seed"), "token_limit": meta.get("token_limit")}
        if row.type == "enhance":
            return {"success": True, "enhanced_prompt": resp.get("enhanced_prompt") or resp.get("response") or "",
                    "generation_time": resp.get("generation_time"), "tokens_generated": resp.get("tokens_generated"),
                    "model_used": resp.get("model_used"), "pure_inference": resp.get("pure_inference") is True,
                    "no_prompt_overrides": resp.get("no_prompt_overrides") is True,
                    "template_respected": resp.get("template_respected") is not False,
                    "execution_metadata": execution, "original_prompt": meta.get("original_prompt"),
                    "request_id": row.request_id, "strategy": meta.get("strategy")}
        return {**resp, "request_id": row.request_id, "strategy": meta.get("strategy"),
                "execution_metadata": execution}

    async def _finished(self, job_id: str) -> None:
        """This gateway finished the job (its guarded update moved it, so this runs once per
        job): it writes the job's audit row and sends the webhook (in the background)."""
        row: JobRecord | None = await self._db(repo.get, job_id)
        if row is None:
            return
        try:
            record_job(row, self.images.prompting, self.images)
        except Exception:
            log.error("job audit row not built", exc_info=True, extra={"event": "job_audit_error", "job_id": job_id})
        if not row.callback_url:
            return
        payload = json.loads(self.view(row).model_dump_json())

        async def record(attempt: dict[str, Any]) -> None:
            await self._db(repo.append_webhook_attempt, job_id, attempt)
        task = asyncio.create_task(self.webhooks.deliver(job_id, row.callback_url, payload, record),
                                   name=f"webhook-{job_id}")
        self._webhook_tasks.add(task)
        task.add_done_callback(self._webhook_tasks.discard)

    async def run_events(self) -> None:
        """Store the queue's events, acknowledging each only once stored."""
        while True:
            try:
                events = await self.queue.events(self.consumer, block_s=1.0)
                for ev in events:
                    await self.apply(ev)
                    await self.queue.ack_event(ev)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("storing job events failed; retrying", exc_info=True, extra={"event": "job_events_error"})
                await asyncio.sleep(1.0)

    # -- the memory queue's dispatcher -----------------------------------------------------------
    async def requeue_unfinished(self) -> int:
        """Memory queue, at start-up: the jobs a previous run of this gateway accepted and did
        not finish are queued again (the in-process queue died with it)."""
        rows = await self._db(repo.unfinished)
        for r in rows:
            if r.status == JobStatus.RUNNING.value:
                await self._db(repo.transition, r.id, JobStatus.QUEUED, {"worker_id": None})
            await self.queue.enqueue(r.id, r.worker_type, r.work)
        return len(rows)

    async def run_dispatcher(self) -> None:
        while True:
            try:
                d = await self.queue.claim(["chat", "image"], self.consumer, block_s=5.0)
                if d is not None:
                    await self._run(d)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.error("job dispatch failed", exc_info=True, extra={"event": "job_dispatch_error"})
                await asyncio.sleep(0.5)

    async def _run(self, d: Delivery) -> None:
        if await self.queue.cancel_requested(d.job_id):
            await self.queue.complete(d, "cancelled", {})
            return
        await self.queue.publish(Event(d.job_id, "started", {"attempt": d.attempt, "worker_id": None,
                                                             "at": time.time()}))
        task = asyncio.create_task(self._call(d))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=self.settings.job_poll_interval_s)
                if task.done():
                    break
                await self.queue.heartbeat(d, self.consumer)
                if await self.queue.cancel_requested(d.job_id):
                    task.cancel()  # closes the worker connection: the worker stops within a step
                    with contextlib.suppress(BaseException):
                        await task
                    await self.queue.complete(d, "cancelled", {})
                    return
        except asyncio.CancelledError:
            task.cancel()
            raise
        exc = task.exception()
        if isinstance(exc, WorkerUnavailable | WorkerOverloaded) and (delay := self._worker_backoff(d.job_id)):
            # No worker of its type could take it now: it waits in the queue rather than fail.
            log.info("job waits for a worker", extra={"event": "job_waits_for_worker", "job_id": d.job_id,
                                                      "error_code": exc.code.value, "retry_in_s": delay})
            await self.queue.release(d, delay_s=delay)
            return
        self._waiting.pop(d.job_id, None)
        try:
            await self.queue.complete(d, "succeeded", task.result())
        except PureInferError as exc:
            await self.queue.complete(d, "failed", {"error": envelope(exc, d.work.get("request_id")),
                                                    "worker_id": getattr(exc, "worker_id", None)})
        except Exception as exc:
            log.error("job failed unexpectedly", exc_info=exc, extra={"event": "job_error", "job_id": d.job_id})
            await self.queue.complete(d, "failed", {"error": envelope(exc, d.work.get("request_id"))})

    def _worker_backoff(self, job_id: str) -> float | None:
        """The delay before this job, which found no worker able to take it, is tried again
        (0.25 s doubling to 5 s); None once it has waited `job_worker_wait_s`: it fails."""
        now = time.monotonic()
        since, tries = self._waiting.get(job_id, (now, 0))
        if now - since >= self.settings.job_worker_wait_s:
            self._waiting.pop(job_id, None)
            return None
        self._waiting[job_id] = (since, tries + 1)
        return min(0.25 * 2 ** tries, 5.0)

    async def _call(self, d: Delivery) -> dict[str, Any]:
        w = d.work
        if d.worker_type == "image":
            return await self._image(d)
        resp, call = await self.client.post(d.worker_type, w.get("model"), w["path"], w["payload"],
                                            w.get("request_id") or d.job_id)
        return {"response": resp.json(), "worker_id": call.worker.id, "worker_type": call.worker.worker_type}

    async def _image(self, d: Delivery) -> dict[str, Any]:
        """An image job through the image service (its audit row, its progress per step)."""
        async def progress(step: int, total: int) -> None:
            await self.queue.publish(Event(d.job_id, "progress", {"step": step, "total": total}))

        req = GenerateImageRequest.model_validate(d.work["request"])
        out = await self.images.generate(req, request_id=d.work.get("request_id") or d.job_id, endpoint="jobs/image",
                                         on_progress=progress, audit=False)
        meta = out.get("execution_metadata") or {}
        return {"response": out, "worker_id": meta.get("worker_id"), "worker_type": meta.get("worker_type")}

    # -- retention -------------------------------------------------------------------------------
    async def run_retention(self, every_s: float = 3600.0) -> None:
        while True:
            try:
                cutoff = datetime.now(UTC) - timedelta(days=self.settings.job_retention_days)
                n = await self._db(repo.delete_finished_before, cutoff)
                if n:
                    log.info("old jobs deleted", extra={"event": "job_retention", "deleted": n})
            except Exception:
                log.warning("job retention failed", exc_info=True, extra={"event": "job_retention_error"})
            await asyncio.sleep(every_s)

    async def close(self) -> None:
        for t in list(self._webhook_tasks):
            t.cancel()
        await asyncio.gather(*self._webhook_tasks, return_exceptions=True)
        await self.webhooks.close()
        await self.queue.close()
