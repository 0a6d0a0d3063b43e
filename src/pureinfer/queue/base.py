"""The `JobQueue` interface both backends implement, and the messages that cross it.

A queue carries *work* (what a worker must run) from the gateway to workers, and *events*
(started, progress, succeeded, failed, cancelled) back. The gateway's SQL store stays the record
of each job; the queue only moves messages, at least once:

- `enqueue` puts a job on its worker type's stream (FIFO per stream).
- `claim` hands a worker the next job: first one whose worker died (not heartbeating for the
  visibility timeout) and so is re-delivered, else a new one. A job delivered more than
  `max_attempts` times goes to the dead letters instead (and a `failed` event is sent for it).
- `heartbeat` keeps a claimed job from being re-delivered while its worker is alive.
- `complete` records the terminal event exactly once per job (a re-delivered job that runs
  twice is recorded once) and only then acknowledges the delivery; `release` hands the job back
  for another worker at once (SIGTERM).
- `publish` sends non-terminal events (started, progress); `events`/`ack_event` is the
  gateway's side, which stores each event in SQL and only then acknowledges it.
- `request_cancel` / `cancel_requested`: any gateway asks, the worker running the job watches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Delivery:
    """One delivery of a job to a worker."""

    job_id: str
    worker_type: str
    work: dict[str, Any]
    attempt: int  # 1 on the first delivery
    ref: str = ""  # the backend's handle (a stream entry id)


@dataclass
class Event:
    """A job event, from whoever ran the job to the gateway that stores it."""

    job_id: str
    kind: str  # started | progress | succeeded | failed | cancelled | requeued
    data: dict[str, Any] = field(default_factory=dict)
    ref: str = ""


TERMINAL_EVENTS = frozenset({"succeeded", "failed", "cancelled"})


class JobQueue(Protocol):
    max_attempts: int

    async def enqueue(self, job_id: str, worker_type: str, work: dict[str, Any]) -> None: ...

    async def claim(self, worker_types: Sequence[str], consumer: str, block_s: float) -> Delivery | None: ...

    async def heartbeat(self, delivery: Delivery, consumer: str) -> None: ...

    async def complete(self, delivery: Delivery, kind: str, data: dict[str, Any]) -> bool:
        """Record the terminal event (once per job; False when another delivery already did),
        then acknowledge the delivery."""
        ...

    async def release(self, delivery: Delivery, delay_s: float = 0.0) -> None: ...

    async def publish(self, event: Event) -> None: ...

    async def events(self, consumer: str, block_s: float, count: int = 100) -> list[Event]: ...

    async def ack_event(self, event: Event) -> None: ...

    async def request_cancel(self, job_id: str) -> None: ...

    async def cancel_requested(self, job_id: str) -> bool: ...

    async def depth(self, worker_type: str) -> int: ...

    async def dead_letters(self, worker_type: str) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...
