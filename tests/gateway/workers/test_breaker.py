"""The circuit breaker's state machine on its own, with an injected clock."""

from __future__ import annotations

from pureinfer.gateway.workers.breaker import CircuitBreaker, CircuitState


def test_breaker_transitions():
    now = [100.0]
    b = CircuitBreaker(failures=3, cooldown_s=10, clock=lambda: now[0])
    b.failure(), b.failure()
    assert b.state is CircuitState.CLOSED and b.available()
    b.success()  # a success resets the count
    b.failure(), b.failure()
    assert b.state is CircuitState.CLOSED
    b.failure()
    assert b.state is CircuitState.OPEN and not b.available() and b.retry_after() == 10
    now[0] += 9.5
    assert not b.available() and b.retry_after() == 0.5
    now[0] += 1
    assert b.available()
    b.acquire()  # the probe
    assert b.state is CircuitState.HALF_OPEN and not b.available()  # one probe at a time
    b.failure()  # a failed probe opens at once
    assert b.state is CircuitState.OPEN and b.retry_after() == 10
    now[0] += 10
    b.acquire()
    b.success()
    assert b.state is CircuitState.CLOSED and b.available() and b.consecutive_failures == 0
