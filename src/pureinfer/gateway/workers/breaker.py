"""A per-worker circuit breaker: closed -> (N consecutive failures) -> open -> (cooldown) ->
half-open (one probe) -> closed on success / open again on failure.

Written by hand: it is thirty lines, must share state with the router's least-loaded choice
(which asks `available()` without side effects), and the libraries (pybreaker, aiobreaker)
wrap the call instead. The clock is injectable for tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = max(1, failures)
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.opened_at = 0.0
        self._probe_out = False

    def available(self) -> bool:
        """May a request be sent now? (No side effects.)"""
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.OPEN:
            return self.clock() >= self.opened_at + self.cooldown_s
        return not self._probe_out

    def acquire(self) -> None:
        """Called for the request actually sent: after the cooldown the first one is the probe."""
        if self.state is CircuitState.OPEN and self.clock() >= self.opened_at + self.cooldown_s:
            self.state = CircuitState.HALF_OPEN
            self._probe_out = False
        if self.state is CircuitState.HALF_OPEN:
            self._probe_out = True

    def retry_after(self) -> float:
        if self.state is CircuitState.OPEN:
            return max(0.0, self.opened_at + self.cooldown_s - self.clock())
        return 0.0

    def success(self) -> None:
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self._probe_out = False

    def failure(self) -> None:
        self.consecutive_failures += 1
        if self.state is CircuitState.HALF_OPEN or self.consecutive_failures >= self.threshold:
            self.state = CircuitState.OPEN
            self.opened_at = self.clock()
            self._probe_out = False
