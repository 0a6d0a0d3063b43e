"""The image engine's queue: groups compatible requests into one pipeline call.

A small, pure object (TGI's `Queue`): no torch, no pipeline; the engine thread asks it for the
next batch and it answers with jobs in arrival order. Written by hand because the rule is ours:

1. The oldest live job leads the batch; only jobs with the same `key` (size, steps, scheduler,
   CFG scale) may join, in arrival order, while the images add up to at most `max_batch`.
2. While there is room, the batch waits up to `wait_s` after the leader arrived, so requests
   that come in together share the call; a full batch leaves at once.
3. Jobs cancelled while queued are dropped here and never reach the device.
A leader asking for more images than `max_batch` runs alone, so no request is ever split.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False)
class Job:
    key: Hashable
    size: int  # images
    payload: Any = None
    enqueued_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False  # set from any thread; a plain bool write is atomic in CPython


class BatchQueue:
    def __init__(self, max_batch: int, wait_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        self.wait_s = max(0.0, wait_s)
        self._clock = clock
        self._jobs: list[Job] = []
        self._cond = threading.Condition()
        self._closed = False

    def put(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("queue closed")
            self._jobs.append(job)
            self._cond.notify_all()

    def close(self) -> None:
        """Wake the consumer; `next_batch` returns None once the queue is closed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def drain(self) -> list[Job]:
        """Remove and return every queued job (on shutdown, to fail them)."""
        with self._cond:
            jobs, self._jobs = self._jobs, []
            return jobs

    @property
    def num_jobs(self) -> int:
        with self._cond:
            return sum(1 for j in self._jobs if not j.cancelled)

    @property
    def num_images(self) -> int:
        with self._cond:
            return sum(j.size for j in self._jobs if not j.cancelled)

    def _select(self) -> list[Job]:
        """The batch the leader would take now (caller holds the lock; cancelled jobs purged)."""
        lead = self._jobs[0]
        chosen, total = [lead], lead.size
        for job in self._jobs[1:]:
            if total >= self.max_batch:
                break
            if job.key == lead.key and total + job.size <= self.max_batch:
                chosen.append(job)
                total += job.size
        return chosen

    def next_batch(self, timeout: float | None = None) -> list[Job] | None:
        """Block until a batch is ready; None when closed (or `timeout` passed with nothing queued)."""
        give_up = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                self._jobs = [j for j in self._jobs if not j.cancelled]
                if self._closed:
                    return None
                if not self._jobs:
                    remaining = None if give_up is None else give_up - self._clock()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._cond.wait(remaining)
                    continue
                chosen = self._select()
                size = sum(j.size for j in chosen)
                window_end = chosen[0].enqueued_at + self.wait_s
                now = self._clock()
                if size >= self.max_batch or now >= window_end:
                    taken = set(map(id, chosen))
                    self._jobs = [j for j in self._jobs if id(j) not in taken]
                    return chosen
                self._cond.wait(window_end - now)
