"""The gateway's Prometheus metrics, served by `GET /metrics` (text format, caller key: the
worker's rule, where /metrics takes the same key as the work).

Each app has its own `CollectorRegistry` (`GatewayMetrics.registry`), never the process-wide
default: two gateways in one process (tests, `pureinfer serve`) keep separate counts and never
clash on a name.

What is measured:
- by the middleware, every request: `pureinfer_gateway_requests_total{endpoint, status}` and
  `pureinfer_gateway_request_seconds{endpoint}` (a histogram); `endpoint` is the route's path
  template (`/templates/{ref}`), or `other` for paths no route serves, so labels stay bounded;
- read when scraped (`gateway_families`): worker health, in-flight requests and circuit state
  per worker, template cache hits and misses, the audit writer's backlog (buffered, being
  spilled, spill file pending) and its record counts (written, spilled, replayed, rejected,
  dropped, store errors).

Adding metrics from another part of the gateway (the jobs add queue depth and job states):
- values you update as things happen: `metrics.counter(...)`, `metrics.gauge(...)`,
  `metrics.histogram(...)` create them in this app's registry (names without the `_total`
  suffix for counters; prometheus_client adds it);
- values you read when scraped: `metrics.add_collector("jobs", fn)`, where `fn()` returns an
  iterable of `prometheus_client.core` metric families (GaugeMetricFamily, ...); adding again
  under the same name replaces it (an app's lifespan may run more than once).
`GatewayMetrics` is on `app.state.metrics`, and on `Gateway.metrics` for the services.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pureinfer.gateway.auth import caller_dep

if TYPE_CHECKING:
    from pureinfer.gateway.audit.writer import AuditWriter
    from pureinfer.gateway.templates.service import TemplateService
    from pureinfer.gateway.workers.registry import WorkerRegistry

log = logging.getLogger("pureinfer.gateway.metrics")

# Gateway requests run from milliseconds (a cached template, a fast worker) to minutes (images).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

Families = Callable[[], Iterable[Metric]]


class _ScrapeTime(Collector):
    """The named scrape-time sources, asked on every scrape; one failing is logged and skipped,
    so one broken part never empties /metrics."""

    def __init__(self) -> None:
        self.sources: dict[str, Families] = {}

    def collect(self) -> Iterable[Metric]:
        for name, source in list(self.sources.items()):
            try:
                yield from list(source())
            except Exception:
                log.exception("metrics source %s failed", name)

    def describe(self) -> Iterable[Metric]:
        return []  # unknown until scraped: the registry must not call collect() at registration


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._scrape_time = _ScrapeTime()
        self.registry.register(self._scrape_time)
        self.requests = self.counter("pureinfer_gateway_requests", "Gateway requests by endpoint and HTTP status",
                                     ["endpoint", "status"])
        self.latency = self.histogram("pureinfer_gateway_request_seconds", "Gateway request latency by endpoint",
                                      ["endpoint"], buckets=LATENCY_BUCKETS)

    # -- for other parts ---------------------------------------------------------------------------
    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, documentation, list(labels), registry=self.registry)

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, documentation, list(labels), registry=self.registry)

    def histogram(self, name: str, documentation: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        return Histogram(name, documentation, list(labels), buckets=buckets, registry=self.registry)

    def add_collector(self, name: str, families: Families) -> None:
        """`families()` is called on each scrape (see the module docstring)."""
        self._scrape_time.sources[name] = families

    def render(self) -> bytes:
        return generate_latest(self.registry)


def gateway_families(registry: WorkerRegistry, templates: TemplateService, audit: AuditWriter) -> Iterable[Metric]:
    """The gateway's own state, read at scrape time: the parts it reads, not the whole Gateway
    (which composes this module: an import back would close a circle)."""
    labels = ["worker_id", "worker_type"]
    healthy = GaugeMetricFamily("pureinfer_gateway_worker_healthy", "1 when the worker passed its last check",
                                labels=labels)
    in_flight = GaugeMetricFamily("pureinfer_gateway_worker_in_flight", "Requests the gateway has at the worker",
                                  labels=labels)
    circuit = GaugeMetricFamily("pureinfer_gateway_worker_circuit", "1 for the worker's circuit state",
                                labels=[*labels, "state"])
    for w in list(registry.workers.values()):
        ids = [w.id, w.worker_type]
        healthy.add_metric(ids, 1.0 if w.healthy else 0.0)
        in_flight.add_metric(ids, float(w.in_flight))
        for state in ("closed", "open", "half_open"):
            circuit.add_metric([*ids, state], 1.0 if w.breaker.state.value == state else 0.0)
    yield from (healthy, in_flight, circuit)

    cache = CounterMetricFamily("pureinfer_gateway_template_cache", "Template selections by cache result",
                                labels=["result"])
    cache.add_metric(["hit"], float(templates.cache_stats["hits"]))
    cache.add_metric(["miss"], float(templates.cache_stats["misses"]))
    yield cache

    status: dict[str, Any] = audit.status()
    backlog = GaugeMetricFamily("pureinfer_gateway_audit_backlog", "Audit records not yet in the store",
                                labels=["where"])
    backlog.add_metric(["buffer"], float(status["buffered"]))
    backlog.add_metric(["spilling"], float(status["spilling"]))
    yield backlog
    yield GaugeMetricFamily("pureinfer_gateway_audit_spill_pending", "1 while a spill file waits for replay",
                            value=1.0 if status["spill_pending"] else 0.0)
    yield GaugeMetricFamily("pureinfer_gateway_audit_store_ok", "1 while the audit store takes writes",
                            value=1.0 if status["store_ok"] else 0.0)
    records = CounterMetricFamily("pureinfer_gateway_audit_records", "Audit records by outcome", labels=["outcome"])
    for outcome in ("recorded", "written", "spilled", "replayed", "rejected", "dropped", "store_errors"):
        records.add_metric([outcome], float(status[outcome]))
    yield records


class MetricsMiddleware:
    """Pure ASGI: counts each request by its route template and status, and times it. A request
    whose client went away before the answer counts as 499 (nginx's code for it)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 499
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = 500
            raise
        finally:
            route = scope.get("route")  # set by the router on the scope it was given
            endpoint = getattr(route, "path", None) or "other"
            self.metrics.requests.labels(endpoint=endpoint, status=str(status)).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)


router = APIRouter(tags=["ops"])


@router.get("/metrics", dependencies=[Depends(caller_dep)])
async def prometheus(request: Request) -> Response:
    """Prometheus text format (caller key, as the worker's /metrics takes its key)."""
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
