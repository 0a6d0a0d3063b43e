"""Worker registry: admin add/remove with URL validation, self-registration and heartbeats,
health checks, least-loaded routing, WORKER_UNAVAILABLE with Retry-After."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from pureinfer.gateway.workers.breaker import CircuitBreaker
from pureinfer.gateway.workers.registry import WorkerRegistry, WorkerState
from pureinfer.gateway.workers.transport import AddressPins
from pureinfer.gateway.workers.urls import UrlPolicy
from pureinfer.settings import WorkerSettings
from pureinfer.worker.registration import run_registration
from tests.support.gateway import ADMIN, CALLER, REG_SECRET, gateway_settings, tpl
from tests.support.live import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_admin_registry_and_health_checks(database_url, make_gateway, fake_workers):
    app, c = await make_gateway(database_url)
    ctl, srv = fake_workers("w1")
    r = await c.post("/workers", json={"url": srv.url + "/", "worker_type": "chat", "models": ["qwen_instruct"]},
                     headers=ADMIN)
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["url"] == srv.url and w["healthy"] is True and w["source"] == "admin" and ctl.health_calls >= 1

    # Refused URLs never enter the registry.
    for bad in ("ftp://127.0.0.1:1", "http://169.254.169.254", "http://10.0.0.7:8000", "http://[fe80::1]:80"):
        r = await c.post("/workers", json={"url": bad}, headers=ADMIN)
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD", bad
    r = await c.post("/workers", json={"url": srv.url})  # admin only
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHORIZED"

    # A second gateway process on the same store sees the worker (refresh) and checks it.
    app2, c2 = await make_gateway(database_url)
    listed = (await c2.get("/workers", headers=ADMIN)).json()
    assert [x["id"] for x in listed] == [w["id"]]
    await wait_for(lambda: app2.state.gateway.registry.workers[w["id"]].healthy)

    # The worker turns unready, then comes back: health checks follow.
    reg = app.state.gateway.registry
    ctl.ready = False
    await wait_for(lambda: not reg.workers[w["id"]].healthy)
    ctl.ready = True
    await wait_for(lambda: reg.workers[w["id"]].healthy)

    # Removal, on either process.
    assert (await c2.delete(f"/workers/{w['id']}", headers=ADMIN)).status_code == 204
    assert (await c.get("/workers", headers=ADMIN)).json() == []
    assert (await c.delete(f"/workers/{w['id']}", headers=ADMIN)).json()["error_code"] == "NOT_FOUND"


async def test_no_worker_is_unavailable_with_retry_after(sqlite_url, make_gateway, fake_workers):
    app, c = await make_gateway(sqlite_url)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    r = await c.post("/enhance-prompt", json={"prompt": "a cat"}, headers=CALLER)
    assert r.status_code == 503 and r.json()["error_code"] == "WORKER_UNAVAILABLE"
    assert int(r.headers["Retry-After"]) >= 1
    # A dead worker (nothing listening) is added but unhealthy: still unavailable.
    r = await c.post("/workers", json={"url": f"http://127.0.0.1:{free_port()}"}, headers=ADMIN)
    assert r.status_code == 201 and r.json()["healthy"] is False and "health check failed" in r.json()["last_error"]
    r = await c.post("/enhance-prompt", json={"prompt": "a cat"}, headers=CALLER)
    assert r.status_code == 503 and r.json()["error_code"] == "WORKER_UNAVAILABLE"
    # An image worker does not serve chat.
    _, img = fake_workers("img")
    await c.post("/workers", json={"url": img.url, "worker_type": "image"}, headers=ADMIN)
    r = await c.post("/enhance-prompt", json={"prompt": "a"}, headers=CALLER)
    assert r.status_code == 503 and r.json()["error_code"] == "WORKER_UNAVAILABLE"


async def test_least_loaded_routing(sqlite_url, make_gateway, fake_workers):
    app, c = await make_gateway(sqlite_url, background=False)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    slow, s1 = fake_workers("slow", gate=threading.Event())  # answers when the test says so
    fast, s2 = fake_workers("fast")
    for s in (s1, s2):
        await c.post("/workers", json={"url": s.url, "models": ["qwen_instruct"]}, headers=ADMIN)
    reg = app.state.gateway.registry
    # Occupy the slow worker with one long request, then the next ones go to the idle one.
    ids = {st.url: st.id for st in reg.workers.values()}
    reg.workers[ids[s1.url]].in_flight = 0
    reg.workers[ids[s2.url]].in_flight = 5
    first = asyncio.create_task(c.post("/enhance-prompt", json={"prompt": "p0"}, headers=CALLER))
    await wait_for(lambda: len(slow.calls) == 1)
    reg.workers[ids[s2.url]].in_flight = 0
    results = [await c.post("/enhance-prompt", json={"prompt": f"p{i}"}, headers=CALLER) for i in range(1, 4)]
    slow.gate.set()
    assert all(r.json()["execution_metadata"]["worker_id"] == ids[s2.url] for r in results)
    assert (await first).json()["execution_metadata"]["worker_id"] == ids[s1.url]
    assert len(fast.calls) == 3 and len(slow.calls) == 1
    assert all(st.in_flight == 0 for st in reg.workers.values())


async def test_self_registration_and_heartbeats(database_url, make_gateway, fake_workers):
    app, c = await make_gateway(database_url, heartbeat_timeout_s=1.0)
    reg = app.state.gateway.registry
    ctl, srv = fake_workers("registered")
    ws = WorkerSettings(gateway_url="http://gateway", gateway_secret=REG_SECRET, worker_url=srv.url,
                        heartbeat_s=0.1, cache_dir="/tmp/unused")
    info = {"worker_type": "chat", "model": "qwen_instruct", "models": ["qwen_instruct", "qwen_base"]}
    task = asyncio.create_task(run_registration(ws, info, client=c))
    try:
        await wait_for(lambda: any(w.url == srv.url for w in reg.workers.values()))
        w = next(w for w in reg.workers.values() if w.url == srv.url)
        assert (w.source, w.worker_type, w.models, w.healthy) == ("registered", "chat", ["qwen_instruct", "qwen_base"], True)
        first = w.last_heartbeat
        await wait_for(lambda: reg.workers[w.id].last_heartbeat > first)
        # Removed by an admin: the next heartbeat gets 404 and the worker registers again.
        await c.delete(f"/workers/{w.id}", headers=ADMIN)
        await wait_for(lambda: w.id in reg.workers, timeout=30)
        # Routing works to it.
        await c.post("/templates", json=tpl(), headers=ADMIN)
        r = await c.post("/enhance-prompt", json={"prompt": "hello"}, headers=CALLER)
        assert r.status_code == 200 and r.json()["execution_metadata"]["worker_id"] == w.id
        assert ctl.calls[-1]["payload"]["model"] == "qwen_instruct"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Silent past heartbeat_timeout_s: no longer routed.
    await asyncio.sleep(1.3)
    r = await c.post("/enhance-prompt", json={"prompt": "hello"}, headers=CALLER)
    assert r.status_code == 503 and r.json()["error_code"] == "WORKER_UNAVAILABLE"


async def test_registration_refused_and_gateway_down(sqlite_url, make_gateway, fake_workers):
    app, c = await make_gateway(sqlite_url)
    _, srv = fake_workers("w")
    # Wrong secret, unsigned, and a forbidden URL: refused, nothing registered. (A worker cannot be
    # started with --gateway and no secret any more; an unsigned registration is sent by hand.)
    r = await c.post("/workers/register", json={"url": srv.url})
    assert r.status_code == 401 and r.json()["error"] == "Missing request signature"
    for secret, url in (("wrong", srv.url), (REG_SECRET, "http://169.254.169.254:80")):
        ws = WorkerSettings(gateway_url="http://gateway", gateway_secret=secret, worker_url=url, heartbeat_s=0.05,
                            cache_dir="/tmp/unused")
        task = asyncio.create_task(run_registration(ws, {}, client=c))
        await asyncio.sleep(0.3)
        assert not task.done()  # keeps trying, never crashes
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert app.state.gateway.registry.workers == {}
    r = await c.post("/workers/register", json={"url": srv.url}, headers={"X-Timestamp": "1", "X-Signature": "sha256=00"})
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHORIZED"

    # Gateway down: the loop survives (retries with backoff) instead of crashing the worker.
    port = free_port()
    ws = WorkerSettings(gateway_url=f"http://127.0.0.1:{port}", gateway_secret=REG_SECRET, worker_url=srv.url,
                        heartbeat_s=0.05, cache_dir="/tmp/unused")
    async with httpx.AsyncClient(timeout=1) as client:
        task = asyncio.create_task(run_registration(ws, {}, client=client))
        await asyncio.sleep(0.5)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_health_check_revalidates_the_url(sqlite_url, make_gateway, fake_workers):
    """A name that later resolves to a refused address (DNS rebinding) leaves rotation."""
    from pureinfer.gateway.workers.urls import UrlPolicy

    dns = {"localhost": ["127.0.0.1"]}
    app, c = await make_gateway(sqlite_url, background=False,
                                url_policy=UrlPolicy(["localhost"], lambda host, port: dns[host]))
    _, srv = fake_workers("w")
    r = await c.post("/workers", json={"url": f"http://localhost:{srv.port}"}, headers=ADMIN)
    assert r.status_code == 201 and r.json()["healthy"] is True
    st = app.state.gateway.registry.workers[r.json()["id"]]
    dns["localhost"] = ["169.254.169.254"]
    assert await app.state.gateway.registry.check(st) is False
    assert st.last_error.startswith("url refused") and "cloud metadata" in st.last_error


async def test_pick_is_a_rule_least_in_flight_then_in_turn(tmp_path):
    """Routing is deterministic: the fewest requests in flight, ties taken in turn, the
    requested model first, open circuits and unhealthy workers skipped."""
    reg = WorkerRegistry(None, gateway_settings(tmp_path, "sqlite://"), None, UrlPolicy([]),  # type: ignore[arg-type]
                         AddressPins())
    for wid, models in (("a", ["m1"]), ("b", ["m1"]), ("c", ["m2"])):
        reg.workers[wid] = WorkerState(id=wid, url=f"http://{wid}", worker_type="chat", models=models,
                                       source="admin", breaker=CircuitBreaker(1, 60.0), healthy=True)
    assert [reg.pick("chat", None).id for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]
    reg.workers["b"].in_flight = 1
    assert {reg.pick("chat", None).id for _ in range(4)} == {"a", "c"}
    assert [reg.pick("chat", "m1").id for _ in range(3)] == ["a", "a", "a"]  # b is busier
    reg.workers["b"].in_flight = 0
    assert sorted(reg.pick("chat", "m1").id for _ in range(4)) == ["a", "a", "b", "b"]
    reg.workers["a"].breaker.failure()  # its circuit opens
    reg.workers["c"].healthy = False
    assert {reg.pick("chat", None).id for _ in range(3)} == {"b"}
    assert reg.pick("chat", None, exclude={"b"}).id == "b"  # the only one left is retried


async def test_registration_never_uses_the_worker_signing_secret(sqlite_url, make_gateway, fake_workers, tmp_path):
    """The registration secret used to fall back to the worker signing secret: every worker that
    registered held the key of the gateway's calls to workers. Separate secrets, both required."""
    from pureinfer.security import sign
    from tests.support.gateway import WORKER_SECRET

    app, c = await make_gateway(sqlite_url, registration_secret=None)  # signing secret set, no registration one
    _, srv = fake_workers("w")
    body = json.dumps({"url": srv.url}).encode()
    r = await c.post("/workers/register", content=body,
                     headers={"Content-Type": "application/json", **sign(WORKER_SECRET, "POST", "/workers/register", body)})
    assert r.status_code == 401 and "registration is disabled" in r.json()["error"]
    assert app.state.gateway.registry.workers == {}
    with pytest.raises(ValueError, match="must differ"):
        gateway_settings(tmp_path, sqlite_url, registration_secret="same", worker_signing_secret="same")
    with pytest.raises(ValueError, match="--gateway needs --gateway-secret"):
        WorkerSettings(gateway_url="http://gateway", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="must differ"):
        WorkerSettings(gateway_url="http://gateway", gateway_secret="same", signing_secret="same", cache_dir=tmp_path)
