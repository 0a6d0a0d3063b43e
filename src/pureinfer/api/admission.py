"""Admission control (TGI's `Infer` + `Queue` idea): one gate for all work, per-kind limits.

Every request that will reach an engine, text or image, takes a permit here first, before any
tokenizing work: past its kind's limit the caller gets WORKER_OVERLOADED with Retry-After at once
instead of queueing unboundedly, and while the worker is not READY (starting, draining) nothing
is admitted (WORKER_UNAVAILABLE). Draining waits for `in_flight` to reach zero, so it waits for
text and images alike.

The engines are sized from the same settings, so what the gate lets in always fits: a text
engine holds `max_running + max_queued` requests (its scheduler asserts it), the image engine
queues up to `max_queued` (a request leaves its queue when its batch starts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pureinfer import metrics
from pureinfer.errors import WorkerOverloaded, WorkerUnavailable
from pureinfer.settings import WorkerSettings

Kind = Literal["text", "image"]


class Permit:
    """One admitted request. Released exactly once, by `release()` (idempotent) or by leaving a
    `with` block: whoever owns the response releases it when the work ends, in every path."""

    def __init__(self, admission: Admission, kind: Kind) -> None:
        self._admission: Admission | None = admission
        self.kind = kind

    def release(self) -> None:
        if self._admission is not None:
            self._admission.counts[self.kind] -= 1
            self._admission = None

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Admission:
    def __init__(self, limits: dict[Kind, int], is_ready: Callable[[], bool]) -> None:
        self.limits = limits
        self.counts: dict[Kind, int] = dict.fromkeys(limits, 0)
        self._is_ready = is_ready

    @classmethod
    def for_settings(cls, s: WorkerSettings, is_ready: Callable[[], bool]) -> Admission:
        """The limits the engines are sized for (see the module docstring)."""
        return cls({"text": s.max_running_requests + s.max_queued_requests, "image": s.max_queued_requests},
                   is_ready)

    @property
    def in_flight(self) -> int:
        return sum(self.counts.values())

    def acquire(self, kind: Kind) -> Permit:
        """Take a permit or raise. Runs on the event loop, so the counters need no lock."""
        if not self._is_ready():
            metrics.REJECTIONS.labels(reason="not_ready").inc()
            raise WorkerUnavailable("The worker is not ready (starting or shutting down)", {"kind": kind})
        if self.counts[kind] >= self.limits[kind]:
            metrics.REJECTIONS.labels(reason="overloaded").inc()
            raise WorkerOverloaded(f"The worker is at capacity for {kind} requests",
                                   {"kind": kind, "in_flight": self.counts[kind], "limit": self.limits[kind]})
        self.counts[kind] += 1
        return Permit(self, kind)
