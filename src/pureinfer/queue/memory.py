"""The in-process queue: the embedded default, for one gateway whose own dispatcher runs the jobs
on registered workers. The same semantics as the Redis backend (FIFO per worker type,
re-delivery after the visibility timeout, dead letters past `max_attempts`, one terminal event
per job), held in this process's memory: a gateway restart re-enqueues the jobs its SQL store
still holds unfinished (gateway/jobs/service.py), so nothing accepted is lost with it.

All methods run on one event loop; the state needs no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pureinfer.queue.base import TERMINAL_EVENTS, Delivery, Event


@dataclass
class _Entry:
    job_id: str
    worker_type: str
    work: dict[str, Any]
    deliveries: int = 0


class MemoryQueue:
    def __init__(self, *, visibility_timeout_s: float = 30.0, max_attempts: int = 3) -> None:
        self.visibility_timeout_s = visibility_timeout_s
        self.max_attempts = max_attempts
        self._ready: dict[str, deque[_Entry]] = {}
        self._claimed: dict[str, tuple[_Entry, float]] = {}  # ref -> (entry, visible again at)
        self._later: list[tuple[_Entry, float]] = []  # handed back with a delay: (entry, ready at)
        self._recorded: set[str] = set()  # jobs whose terminal event was recorded
        self._events: deque[Event] = deque()
        self._dead: dict[str, list[dict[str, Any]]] = {}
        self._cancel: set[str] = set()
        self._refs = itertools.count(1)
        self._changed: asyncio.Condition | None = None

    def _cond(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        async with self._cond():
            self._cond().notify_all()

    async def _wait(self, timeout: float) -> None:
        if timeout <= 0:
            return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that arrives as
        # the condition is notified (it returns the result instead), and a dispatcher cancelled at
        # shutdown then loops on forever, hanging the gateway's lifespan.
        async with self._cond():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._cond().wait()

    async def enqueue(self, job_id: str, worker_type: str, work: dict[str, Any]) -> None:
        self._ready.setdefault(worker_type, deque()).append(_Entry(job_id, worker_type, work))
        await self._notify()

    def _expire(self) -> None:
        """Claimed jobs past their visibility timeout go back to the front of their queue."""
        now = time.monotonic()
        for ref, (entry, visible_at) in list(self._claimed.items()):
            if visible_at <= now:
                del self._claimed[ref]
                self._ready.setdefault(entry.worker_type, deque()).appendleft(entry)
        due = [e for e, at in self._later if at <= now]
        self._later = [(e, at) for e, at in self._later if at > now]
        for entry in reversed(due):
            self._ready.setdefault(entry.worker_type, deque()).appendleft(entry)

    def _next_due(self) -> float:
        """Seconds until the next delayed hand-back is ready (a claim waiting sleeps no longer)."""
        return min((at for _e, at in self._later), default=float("inf")) - time.monotonic()

    async def claim(self, worker_types: Sequence[str], consumer: str, block_s: float) -> Delivery | None:
        deadline = time.monotonic() + block_s
        while True:
            self._expire()
            for wt in worker_types:
                q = self._ready.get(wt)
                while q:
                    entry = q.popleft()
                    if entry.job_id in self._recorded:
                        continue  # finished by an earlier delivery
                    entry.deliveries += 1
                    if entry.deliveries > self.max_attempts:
                        await self._dead_letter(entry)
                        continue
                    ref = str(next(self._refs))
                    self._claimed[ref] = (entry, time.monotonic() + self.visibility_timeout_s)
                    return Delivery(entry.job_id, wt, entry.work, entry.deliveries, ref)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await self._wait(min(left, self.visibility_timeout_s, max(0.0, self._next_due())))

    async def _dead_letter(self, entry: _Entry) -> None:
        self._dead.setdefault(entry.worker_type, []).append(
            {"job_id": entry.job_id, "work": entry.work, "deliveries": entry.deliveries - 1})
        if entry.job_id not in self._recorded:
            self._recorded.add(entry.job_id)
            n = entry.deliveries - 1
            self._events.append(Event(entry.job_id, "failed", {"dead_letter": True, "attempts": n, "error": {
                "success": False, "error": f"The job failed on {n} deliveries (never finished)",
                "error_code": "INTERNAL_ERROR", "details": {"attempts": n},
                "suggested_action": "Submit the job again once the cause is fixed"}}))
            await self._notify()

    async def heartbeat(self, delivery: Delivery, consumer: str) -> None:
        if delivery.ref in self._claimed:
            entry, _ = self._claimed[delivery.ref]
            self._claimed[delivery.ref] = (entry, time.monotonic() + self.visibility_timeout_s)

    async def complete(self, delivery: Delivery, kind: str, data: dict[str, Any]) -> bool:
        assert kind in TERMINAL_EVENTS, kind
        first = delivery.job_id not in self._recorded
        if first:
            self._recorded.add(delivery.job_id)
            self._events.append(Event(delivery.job_id, kind, data))
        self._claimed.pop(delivery.ref, None)
        await self._notify()
        return first

    async def release(self, delivery: Delivery, delay_s: float = 0.0) -> None:
        """Hand the job back (not a failed attempt): at the front of its queue, or after
        `delay_s` (the dispatcher's backoff while no worker can take it)."""
        claimed = self._claimed.pop(delivery.ref, None)
        if claimed is not None:
            entry = claimed[0]
            entry.deliveries -= 1  # a hand-back is not a failed attempt
            if delay_s > 0:
                self._later.append((entry, time.monotonic() + delay_s))
            else:
                self._ready.setdefault(entry.worker_type, deque()).appendleft(entry)
            self._events.append(Event(delivery.job_id, "requeued", {}))
            await self._notify()

    async def publish(self, event: Event) -> None:
        self._events.append(event)
        await self._notify()

    async def events(self, consumer: str, block_s: float, count: int = 100) -> list[Event]:
        if not self._events:
            await self._wait(block_s)
        out: list[Event] = []
        while self._events and len(out) < count:
            out.append(self._events.popleft())
        return out

    async def ack_event(self, event: Event) -> None:
        return None  # taken off the deque when read: one process, nothing to re-deliver to

    async def request_cancel(self, job_id: str) -> None:
        self._cancel.add(job_id)
        await self._notify()

    async def cancel_requested(self, job_id: str) -> bool:
        return job_id in self._cancel

    async def depth(self, worker_type: str) -> int:
        return len(self._ready.get(worker_type, ()))

    async def dead_letters(self, worker_type: str) -> list[dict[str, Any]]:
        return list(self._dead.get(worker_type, []))

    async def close(self) -> None:
        return None
