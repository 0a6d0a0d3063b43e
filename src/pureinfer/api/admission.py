"""Admission control (TGI's `Infer` + `Queue` idea): a bounded number of requests in flight.

A request is admitted before any tokenizing work: at most `max_running + max_queued` may be in
flight at once (the engine runs up to `max_running` of them; the rest wait for a slot). Past
that the caller gets WORKER_OVERLOADED with Retry-After at once instead of queueing unboundedly.
While the worker is not READY (starting, draining) nothing is admitted.
"""

from __future__ import annotations

from collections.abc import Callable

from pureinfer import metrics
from pureinfer.errors import WorkerOverloaded, WorkerUnavailable


class Slot:
    """One admitted request. Released exactly once, by `release()` or leaving a `with` block:
    a streaming response takes the slot along and releases it when the stream ends."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            self._admission.in_flight -= 1
            self._admission = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Admission:
    def __init__(self, max_running: int, max_queued: int, is_ready: Callable[[], bool]) -> None:
        self.capacity = max_running + max_queued
        self.max_running = max_running
        self.max_queued = max_queued
        self._is_ready = is_ready
        self.in_flight = 0

    def acquire(self, kind: str = "text") -> Slot:
        """Take a slot or raise. Runs on the event loop, so the counter needs no lock."""
        if not self._is_ready():
            metrics.REJECTIONS.labels(reason="not_ready").inc()
            raise WorkerUnavailable("The worker is not ready (starting or shutting down)", {"kind": kind})
        if self.in_flight >= self.capacity:
            metrics.REJECTIONS.labels(reason="overloaded").inc()
            raise WorkerOverloaded(
                "The worker is at capacity",
                {"in_flight": self.in_flight, "max_running_requests": self.max_running,
                 "max_queued_requests": self.max_queued},
            )
        self.in_flight += 1
        return Slot(self)
