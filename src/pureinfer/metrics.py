"""Prometheus metrics (prometheus_client, default registry) and the rolling-window figures that
/health and /status report. Metric names follow vLLM's where one fits (`num_requests_running`,
`time_to_first_token_seconds`, ...), under the `pureinfer_` prefix.

Metrics are module-level: prometheus_client refuses to register a name twice, and several apps
may live in one process (tests, `pureinfer serve`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_TOKEN_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

REQUESTS = Counter("pureinfer_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"])
ERRORS = Counter("pureinfer_errors", "Errors by error code", ["code"])
REJECTIONS = Counter("pureinfer_request_rejections", "Requests refused at admission, by reason", ["reason"])
REQUEST_LATENCY = Histogram("pureinfer_http_request_duration_seconds", "HTTP request latency by endpoint",
                            ["endpoint"], buckets=_LATENCY_BUCKETS)

PROMPT_TOKENS = Counter("pureinfer_prompt_tokens", "Prompt tokens processed", ["model"])
GENERATION_TOKENS = Counter("pureinfer_generation_tokens", "Tokens generated", ["model"])
RUNNING = Gauge("pureinfer_num_requests_running", "Text requests in the engine's running batch", ["model"])
WAITING = Gauge("pureinfer_num_requests_waiting", "Text requests admitted and waiting for a batch slot", ["model"])
TTFT = Histogram("pureinfer_time_to_first_token_seconds", "Time to first token", ["model"],
                 buckets=_LATENCY_BUCKETS)
ITL = Histogram("pureinfer_inter_token_latency_seconds", "Time between streamed deltas", ["model"],
                buckets=_TOKEN_LATENCY_BUCKETS)
E2E = Histogram("pureinfer_e2e_request_latency_seconds", "Admission to last token", ["model"],
                buckets=_LATENCY_BUCKETS)
QUEUE_TIME = Histogram("pureinfer_request_queue_time_seconds", "Admission to the engine's first output",
                       ["model"], buckets=_LATENCY_BUCKETS)


@dataclass(frozen=True)
class WindowFigures:
    requests_per_minute: float
    average_response_time: float | None  # seconds; None with no request in the window
    error_rate: float | None
    requests_in_window: int


class RollingWindow:
    """Completed requests over the last `window_s` seconds: rate, mean latency, error rate."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, float, bool]] = deque()
        self._lock = threading.Lock()

    def record(self, latency_s: float, ok: bool, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._events.append((now, latency_s, ok))
            self._trim(now)

    def _trim(self, now: float) -> None:
        cutoff = now - self.window_s
        while self._events and self._events[0][0] < cutoff:
            self._events.popleft()

    def figures(self, now: float | None = None) -> WindowFigures:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            events = list(self._events)
        n = len(events)
        if not n:
            return WindowFigures(0.0, None, None, 0)
        return WindowFigures(
            requests_per_minute=round(n * 60.0 / self.window_s, 3),
            average_response_time=round(sum(e[1] for e in events) / n, 4),
            error_rate=round(sum(1 for e in events if not e[2]) / n, 4),
            requests_in_window=n,
        )
