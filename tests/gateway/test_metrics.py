"""GET /metrics: Prometheus text from this app's own registry (two gateways in one process count
apart), requests by route and status with latency histograms, worker health and circuit state,
template cache hits and misses, the audit writer's backlog; the caller key, as on the worker;
and the way other parts add their own metrics."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import ADMIN, CALLER, tpl

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def scrape(c) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await c.get("/metrics", headers=CALLER)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.text) for s in family.samples}


def value(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_requests_workers_templates_and_audit(sqlite_url, make_gateway, fake_workers):
    app, c = await make_gateway(sqlite_url, background=False)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    ctl, srv = fake_workers("w")
    wid = (await c.post("/workers", json={"url": srv.url}, headers=ADMIN)).json()["id"]
    for _ in range(3):
        assert (await c.post("/enhance-prompt", json={"prompt": "a cat"}, headers=CALLER)).status_code == 200
    assert (await c.post("/enhance-prompt", json={"prompt": ""}, headers=CALLER)).status_code == 400
    assert (await c.get("/templates/nope", headers=ADMIN)).status_code == 404
    assert (await c.get("/no/such/path")).status_code == 404
    deadline = time.monotonic() + 60  # a bound on waiting, not a speed goal
    while app.state.gateway.audit.status()["written"] < 3:  # the writer is asynchronous
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    m = await scrape(c)
    requests = "pureinfer_gateway_requests_total"
    assert value(m, requests, endpoint="/enhance-prompt", status="200") == 3
    assert value(m, requests, endpoint="/enhance-prompt", status="400") == 1
    assert value(m, requests, endpoint="/templates/{ref}", status="404") == 1  # the route, not the path
    assert value(m, requests, endpoint="other", status="404") == 1
    assert value(m, "pureinfer_gateway_request_seconds_count", endpoint="/enhance-prompt") == 4
    assert value(m, "pureinfer_gateway_worker_healthy", worker_id=wid, worker_type="chat") == 1
    assert value(m, "pureinfer_gateway_worker_in_flight", worker_id=wid, worker_type="chat") == 0
    assert value(m, "pureinfer_gateway_worker_circuit", worker_id=wid, worker_type="chat", state="closed") == 1
    assert value(m, "pureinfer_gateway_worker_circuit", worker_id=wid, worker_type="chat", state="open") == 0
    hits = value(m, "pureinfer_gateway_template_cache_total", result="hit")
    misses = value(m, "pureinfer_gateway_template_cache_total", result="miss")
    assert misses >= 1 and hits >= 2 and hits + misses == 3  # the first selection loads, the rest hit
    assert value(m, "pureinfer_gateway_audit_records_total", outcome="written") >= 3
    assert value(m, "pureinfer_gateway_audit_records_total", outcome="rejected") == 0
    assert value(m, "pureinfer_gateway_audit_backlog", where="buffer") is not None
    assert value(m, "pureinfer_gateway_audit_store_ok") == 1

    # A worker whose circuit opens shows it.
    ctl.always = 500
    for _ in range(3):
        await c.post("/enhance-prompt", json={"prompt": "a cat"}, headers=CALLER)
    m = await scrape(c)
    assert value(m, "pureinfer_gateway_worker_circuit", worker_id=wid, worker_type="chat", state="open") == 1


async def test_two_gateways_in_one_process_count_apart(sqlite_url, make_gateway, tmp_path):
    _, a = await make_gateway(sqlite_url, background=False)
    _, b = await make_gateway(f"sqlite:///{tmp_path / 'other.db'}", background=False)
    for _ in range(2):
        await a.get("/health")
    await b.get("/health")
    assert value(await scrape(a), "pureinfer_gateway_requests_total", endpoint="/health", status="200") == 2
    assert value(await scrape(b), "pureinfer_gateway_requests_total", endpoint="/health", status="200") == 1


async def test_metrics_take_the_caller_key(sqlite_url, make_gateway):
    _, c = await make_gateway(sqlite_url, background=False)
    r = await c.get("/metrics")
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHORIZED"
    assert (await c.get("/metrics", headers=ADMIN)).status_code == 200  # an admin key is a caller key too


async def test_other_parts_add_their_metrics(sqlite_url, make_gateway):
    app, c = await make_gateway(sqlite_url, background=False)
    metrics = app.state.metrics
    assert app.state.gateway.metrics is metrics
    jobs = metrics.counter("pureinfer_gateway_jobs", "Jobs by state", ["state"])
    jobs.labels(state="succeeded").inc(2)
    depth = {"image": 4}

    def queue() -> list[GaugeMetricFamily]:
        g = GaugeMetricFamily("pureinfer_gateway_queue_depth", "Jobs waiting", labels=["worker_type"])
        for kind, n in depth.items():
            g.add_metric([kind], n)
        return [g]

    def broken() -> list[GaugeMetricFamily]:
        raise RuntimeError("a part's bug")

    metrics.add_collector("jobs-queue", queue)
    metrics.add_collector("broken", broken)
    m = await scrape(c)
    assert value(m, "pureinfer_gateway_jobs_total", state="succeeded") == 2
    assert value(m, "pureinfer_gateway_queue_depth", worker_type="image") == 4
    assert value(m, "pureinfer_gateway_worker_circuit", worker_id="x") is None  # no workers, nothing made up
    depth["image"] = 1
    metrics.add_collector("jobs-queue", queue)  # the same name replaces, never duplicates
    assert value(await scrape(c), "pureinfer_gateway_queue_depth", worker_type="image") == 1
