"""The worker's lifecycle as an explicit state machine (cog's pattern).

    STARTING -> READY -> DRAINING -> STOPPED
        \\          \\________________ FAILED (an engine died)
         \\_______________________/

Only READY admits work and reports ready; DRAINING finishes what it has and refuses the rest.
"""

from __future__ import annotations

import threading
from enum import StrEnum


class WorkerState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"

    def is_terminal(self) -> bool:
        return self in (WorkerState.STOPPED, WorkerState.FAILED)


_ALLOWED: dict[WorkerState, frozenset[WorkerState]] = {
    WorkerState.STARTING: frozenset({WorkerState.READY, WorkerState.FAILED, WorkerState.STOPPED}),
    WorkerState.READY: frozenset({WorkerState.DRAINING, WorkerState.FAILED, WorkerState.STOPPED}),
    WorkerState.DRAINING: frozenset({WorkerState.STOPPED, WorkerState.FAILED}),
    WorkerState.STOPPED: frozenset(),
    WorkerState.FAILED: frozenset({WorkerState.STOPPED}),
}


class IllegalTransition(RuntimeError):
    pass


class Lifecycle:
    """Holds the current state; every change goes through `to()`, which refuses illegal moves."""

    def __init__(self) -> None:
        self._state = WorkerState.STARTING
        self._lock = threading.Lock()

    @property
    def state(self) -> WorkerState:
        return self._state

    def to(self, new: WorkerState) -> None:
        with self._lock:
            if new == self._state:
                return
            if new not in _ALLOWED[self._state]:
                raise IllegalTransition(f"{self._state} -> {new}")
            self._state = new
