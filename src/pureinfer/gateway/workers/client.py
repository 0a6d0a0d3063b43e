"""Signed calls to workers: connect/read timeouts, an overall deadline, retries with exponential
backoff and full jitter (tenacity) on connection errors and 503 only, failover to another
worker, the per-worker circuit breaker, and pass-through of a worker's own error codes.

    connection error / 503     -> breaker failure, retry (another worker when there is one)
    5xx without an envelope    -> the same: the worker app did not answer (killed mid-request)
    read timeout, deadline     -> WORKER_TIMEOUT (not retried: the work may still be running)
    3xx                        -> refused, never followed (WORKER_UNAVAILABLE, not retried)
    4xx                        -> the worker's envelope unchanged (not retried; the worker is fine)
    other 5xx                  -> the worker's envelope unchanged, breaker failure, not retried
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from pureinfer.errors import PureInferError, WorkerTimeout, WorkerUnavailable, from_envelope
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.gateway.workers.registry import WorkerRegistry, WorkerState
from pureinfer.security import sign


class _Retryable(Exception):
    def __init__(self, error: PureInferError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class WorkerCall:
    worker: WorkerState
    attempts: int


def _is_envelope(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and "error_code" in data


def _error_from(resp: httpx.Response, body: bytes) -> PureInferError:
    try:
        data = json.loads(body)
        if isinstance(data, dict) and "error_code" in data:
            err = from_envelope(data, resp.status_code)
        else:
            raise ValueError
    except ValueError:
        cls = WorkerUnavailable if resp.status_code == 503 else PureInferError
        err = cls(f"Worker answered HTTP {resp.status_code}", {"worker_status": resp.status_code})
    ra = resp.headers.get("retry-after")
    if ra and ra.isdigit():
        err.retry_after = int(ra)
    return err


class WorkerClient:
    def __init__(self, registry: WorkerRegistry, settings: GatewaySettings, http: httpx.AsyncClient) -> None:
        self.registry = registry
        self.settings = settings
        self.http = http

    def _headers(self, path: str, body: bytes, request_id: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-Request-ID": request_id}
        if self.settings.worker_api_key:
            headers["Authorization"] = f"Bearer {self.settings.worker_api_key}"
        if self.settings.worker_signing_secret:
            # sign() stamps microseconds, so a retry of the same body is not taken for a replay.
            headers |= sign(self.settings.worker_signing_secret, "POST", path, body)
        return headers

    def _timeout(self, deadline: float) -> httpx.Timeout:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkerTimeout("The request deadline was spent before a worker answered",
                                {"deadline_s": self.settings.request_timeout_s})
        return httpx.Timeout(connect=min(self.settings.connect_timeout_s, remaining),
                             read=min(self.settings.read_timeout_s, remaining),
                             write=min(self.settings.read_timeout_s, remaining), pool=min(5.0, remaining))

    async def _attempt(self, worker: WorkerState, path: str, payload: dict[str, Any], model: str | None,
                       request_id: str, deadline: float, stream: bool) -> httpx.Response:
        # Name the model only to a worker that serves it; others run their default model.
        if model and model in worker.models:
            payload = {**payload, "model": model}
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        req = self.http.build_request("POST", worker.url + path, content=body,
                                      headers=self._headers(path, body, request_id), timeout=self._timeout(deadline))
        try:
            resp = await self.http.send(req, stream=True)
        except httpx.TimeoutException as exc:
            worker.breaker.failure()
            if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise _Retryable(WorkerUnavailable("Worker connection timed out", {"worker_id": worker.id})) from None
            raise WorkerTimeout("Worker did not answer within the read timeout",
                                {"worker_id": worker.id, "read_timeout_s": self.settings.read_timeout_s}) from None
        except httpx.TransportError as exc:
            worker.breaker.failure()
            raise _Retryable(WorkerUnavailable("Worker connection failed",
                                               {"worker_id": worker.id, "reason": type(exc).__name__})) from None
        if resp.status_code < 300:
            if not stream:
                try:
                    await resp.aread()
                except httpx.TimeoutException:
                    worker.breaker.failure()
                    raise WorkerTimeout("Worker did not finish within the read timeout",
                                        {"worker_id": worker.id}) from None
                except httpx.TransportError as exc:
                    worker.breaker.failure()
                    raise _Retryable(WorkerUnavailable("Worker connection failed",
                                                       {"worker_id": worker.id, "reason": type(exc).__name__})) from None
                finally:
                    await resp.aclose()
            worker.breaker.success()
            return resp
        try:
            content = await resp.aread()
        except httpx.HTTPError:
            content = b""
        finally:
            await resp.aclose()
        if resp.status_code < 400:
            worker.breaker.failure()
            raise WorkerUnavailable("Worker answered with a redirect; redirects are never followed",
                                    {"worker_id": worker.id, "worker_status": resp.status_code})
        err = _error_from(resp, content)
        if resp.status_code == 503 or (resp.status_code >= 500 and not _is_envelope(content)):
            # 503, or a 5xx the worker app did not write (no envelope: its server answered while
            # the app was going away, e.g. a worker killed mid-request): the work was not done.
            worker.breaker.failure()
            raise _Retryable(err)
        if resp.status_code >= 500:
            worker.breaker.failure()
        else:
            worker.breaker.success()
        raise err

    async def post(self, worker_type: str, model: str | None, path: str, payload: dict[str, Any],
                   request_id: str, *, stream: bool = False,
                   deadline: float | None = None) -> tuple[httpx.Response, WorkerCall]:
        """POST to the best worker. Non-stream: the response is read and the worker released.
        Stream: the caller must close the response, then call `release(call)`."""
        deadline = deadline or time.monotonic() + self.settings.request_timeout_s
        failed: set[str] = set()
        s = self.settings

        def stop(rs: RetryCallState) -> bool:
            return rs.attempt_number >= s.max_attempts or time.monotonic() >= deadline

        def wait(rs: RetryCallState) -> float:
            w = wait_random_exponential(multiplier=s.backoff_initial_s, max=s.backoff_max_s)(rs)
            return max(0.0, min(w, deadline - time.monotonic()))

        attempts = 0
        try:
            async for attempt in AsyncRetrying(stop=stop, wait=wait, retry=retry_if_exception_type(_Retryable),
                                               reraise=True):
                with attempt:
                    attempts += 1
                    worker = self.registry.pick(worker_type, model, failed)
                    worker.in_flight += 1
                    try:
                        resp = await self._attempt(worker, path, payload, model, request_id, deadline, stream)
                    except BaseException as exc:
                        worker.in_flight -= 1
                        failed.add(worker.id)
                        err = exc.error if isinstance(exc, _Retryable) else exc
                        err.worker_id = worker.id  # type: ignore[attr-defined]  # for the audit row
                        raise
                    if not stream:
                        worker.in_flight -= 1
                    return resp, WorkerCall(worker, attempts)
        except _Retryable as exc:
            err = exc.error
            if time.monotonic() >= deadline:
                timeout = WorkerTimeout("The request deadline was spent while retrying workers",
                                        {"attempts": attempts, "last_error": err.code.value})
                timeout.worker_id = getattr(err, "worker_id", None)  # type: ignore[attr-defined]
                err = timeout
            else:
                err.details = {**(err.details or {}), "attempts": attempts}
            err.attempts = attempts  # type: ignore[attr-defined]  # for the audit row
            raise err from None
        except PureInferError as exc:
            exc.attempts = attempts  # type: ignore[attr-defined]  # for the audit row
            raise
        raise AssertionError("unreachable")

    @staticmethod
    def release(call: WorkerCall) -> None:
        call.worker.in_flight -= 1


async def sse_lines(resp: httpx.Response) -> AsyncIterator[str]:
    """The lines of an SSE body, ended by LF or CR LF as the SSE format ends them. Not httpx's
    `aiter_lines`: it splits at every `str.splitlines` boundary, U+2028, U+2029 and NEL included,
    which JSON leaves raw inside strings (a prompt echoed in the final event), and so cut events in
    two."""
    pending = b""
    async for chunk in resp.aiter_bytes():
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r").decode()
    if pending:
        yield pending.removesuffix(b"\r").decode()
