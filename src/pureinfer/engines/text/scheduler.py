"""Which requests run in the next decoding step: the continuous-batching policy, as pure state.

* FIFO: requests wait in arrival order and join the running batch as soon as a slot is free
  (at most ``max_running``). The admission gate in front (api/admission.py) never lets more than
  ``max_running + max_waiting`` requests in, so the queue has no refusal of its own: ``add``
  asserts that bound.
* Every running request that has finished its prompt gets exactly one token per step, so no
  running request starves; a request leaves the batch the step it finishes.
* Prompts are prefilled in chunks that share the step with the decode tokens (the token
  budget ``max_step_tokens`` bounds a step's length, and so the stall that a long new prompt
  causes for everyone else's next token).
* Aborts (a consumer went away) and deadlines are applied at the start of each step, so a
  slot is free within one step. This is the only place a text request's deadline is enforced.

The engine thread calls `schedule()`/`finish()`; the event-loop side only calls `add()` and
`abort()`. One lock guards the state; nothing slow happens under it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pureinfer.engines.base import TextRequest


@dataclass(eq=False, slots=True)
class Sequence:
    """One request inside the engine. `tokens` = prompt + generated; `n_cached` of them are in
    the KV cache."""

    request: TextRequest
    tokens: list[int]
    n_prompt: int
    channel: Any  # engine-side sink of deltas (channel.Channel)
    state: Any = None  # engine-specific per-request state (generator, output text, cache)
    kv: Any = None  # the request's KV cache slot, taken when it first runs
    n_cached: int = 0
    arrival: float = field(default_factory=time.monotonic)

    @property
    def n_generated(self) -> int:
        return len(self.tokens) - self.n_prompt

    @property
    def prefilled(self) -> bool:
        return self.n_cached >= self.n_prompt


@dataclass(slots=True)
class Plan:
    """One step: each scheduled sequence with the number of its tokens to feed."""

    work: list[tuple[Sequence, int]]
    expired: list[Sequence]  # deadline passed: the engine reports WORKER_TIMEOUT to them


class Scheduler:
    def __init__(self, *, max_running: int, max_waiting: int, max_step_tokens: int,
                 release: Callable[[Sequence], None] | None = None) -> None:
        if max_running < 1 or max_waiting < 0 or max_step_tokens < 1:
            raise ValueError("max_running >= 1, max_waiting >= 0 and max_step_tokens >= 1 are required")
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.max_step_tokens = max_step_tokens
        self._lock = threading.Lock()
        self._waiting: deque[Sequence] = deque()
        self._running: list[Sequence] = []
        self._aborted: set[Sequence] = set()
        self._release = release  # gives a leaving sequence's KV slot back

    @property
    def num_running(self) -> int:
        return len(self._running)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def add(self, seq: Sequence) -> None:
        with self._lock:
            # Sequences whose consumer has let go no longer count: the gate released their
            # permits already, though the engine thread removes them only at the next step.
            live = sum(1 for s in (*self._waiting, *self._running) if s not in self._aborted)
            assert live < self.max_running + self.max_waiting, (
                f"admission let in more than this engine holds ({self.max_running} running + "
                f"{self.max_waiting} waiting): size the engine from the same settings as the gate")
            self._waiting.append(seq)

    def abort(self, seq: Sequence) -> None:
        """The consumer let go (done, failed or gone): taken out at the next step if still in."""
        with self._lock:
            self._aborted.add(seq)

    def finish(self, seq: Sequence) -> None:
        """Take a sequence out (done, failed or aborted); frees its cache."""
        with self._lock:
            self._remove(seq)

    def drain(self) -> list[Sequence]:
        """Remove and return everything (engine shutdown or death)."""
        with self._lock:
            seqs = [*self._running, *self._waiting]
            self._running.clear()
            self._waiting.clear()
            self._aborted.clear()
            for seq in seqs:
                self._free_kv(seq)
            return seqs

    def has_work(self) -> bool:
        return bool(self._running or self._waiting or self._aborted)

    def schedule(self, now: float | None = None) -> Plan:
        now = time.monotonic() if now is None else now
        with self._lock:
            for seq in self._aborted:
                self._remove(seq)
            self._aborted.clear()
            expired = [
                s for s in (*self._running, *self._waiting)
                if s.request.deadline is not None and now >= s.request.deadline
            ]
            for seq in expired:
                self._remove(seq)
            while self._waiting and len(self._running) < self.max_running:
                self._running.append(self._waiting.popleft())
            work: list[tuple[Sequence, int]] = [(s, 1) for s in self._running if s.prefilled]
            budget = max(self.max_step_tokens - len(work), 1)
            for seq in self._running:
                if budget <= 0:
                    break
                if not seq.prefilled:
                    n = min(seq.n_prompt - seq.n_cached, budget)
                    work.append((seq, n))
                    budget -= n
            return Plan(work=work, expired=expired)

    def _remove(self, seq: Sequence) -> None:
        if seq in self._running:
            self._running.remove(seq)
        else:
            with contextlib.suppress(ValueError):
                self._waiting.remove(seq)
        self._free_kv(seq)

    def _free_kv(self, seq: Sequence) -> None:
        if seq.kv is not None and self._release is not None:
            self._release(seq)
        seq.kv = None
