"""Calling workers: bounded retries with backoff on 503 and connection errors only, no retry on
4xx, error codes passed through, timeouts and the deadline (WORKER_TIMEOUT), redirects never
followed, the circuit breaker (one worker), failover when a worker is killed mid-test."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.gateway import ADMIN, CALLER, tpl

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def gateway_with(make_gateway, url, fake_workers, names=("w1",), **settings):
    app, c = await make_gateway(url, background=False, **settings)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    workers = []
    for n in names:
        ctl, srv = fake_workers(n)
        r = await c.post("/workers", json={"url": srv.url, "models": ["qwen_instruct"]}, headers=ADMIN)
        assert r.json()["healthy"], r.text
        workers.append((ctl, srv, r.json()["id"]))
    return app, c, workers


async def until_called(ctl) -> None:
    """The fake worker's thread records a call when its handler runs, which on a loaded machine can
    come after the gateway has already given up on it (a 0.3 s read timeout, a 0.5 s deadline):
    wait for the record before counting."""
    deadline = time.monotonic() + 60
    while not ctl.calls:
        assert time.monotonic() < deadline, "the worker never saw the call"
        await asyncio.sleep(0.02)


async def enhance(c, prompt="a red fox"):
    return await c.post("/enhance-prompt", json={"prompt": prompt}, headers=CALLER)


async def test_success_shape_and_signed_call(sqlite_url, make_gateway, fake_workers):
    app, c, [(ctl, srv, wid)] = await gateway_with(make_gateway, sqlite_url, fake_workers)
    r = await c.post("/enhance-prompt", json={"prompt": "a red fox", "quality": "high", "format": "png", "seed": 7},
                     headers={**CALLER, "X-Request-ID": "req-123"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["original_prompt"] == "a red fox"
    assert body["enhanced_prompt"] == "[w1] enhanced: a red fox" and body["request_id"] == "req-123"
    md = body["execution_metadata"]
    assert (md["template_name"], md["template_version"], md["fallback_level"], md["worker_id"]) == \
        ("sdxl_instruct_sfw", 1, 0, wid)
    assert md["cache_hit"] is False and md["token_limit"] == 75 and md["tokens_generated"] == 5 and md["attempts"] == 1
    # The worker got exactly [system: template, user: prompt], max_tokens = token_limit, the request id.
    call = ctl.calls[-1]
    assert call["payload"]["messages"] == [{"role": "system", "content": "You write SDXL prompts."},
                                           {"role": "user", "content": "a red fox"}]
    assert call["payload"]["max_tokens"] == 75 and call["payload"]["seed"] == 7
    assert call["request_id"] == "req-123" and r.headers["x-request-id"] == "req-123"
    # Identical requests back to back: each is signed differently (the worker refuses replays).
    for _ in range(5):
        assert (await enhance(c)).status_code == 200
    assert (await enhance(c)).json()["execution_metadata"]["cache_hit"] is True
    # Caller auth.
    r = await c.post("/enhance-prompt", json={"prompt": "x"})
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHORIZED"
    r = await c.post("/enhance-prompt", json={"prompt": "", "content_mode": "weird"}, headers=CALLER)
    assert r.status_code == 400 and {f["field"] for f in r.json()["details"]["fields"]} == {"prompt", "content_mode"}


async def test_bounded_retries_on_503_then_pass_through(sqlite_url, make_gateway, fake_workers):
    app, c, [(ctl, _, _)] = await gateway_with(make_gateway, sqlite_url, fake_workers, max_attempts=3,
                                               breaker_failures=100)
    ctl.always = 503
    t = time.monotonic()
    r = await enhance(c)
    assert len(ctl.calls) == 3  # exactly max_attempts, then stop
    assert r.status_code == 503 and r.json()["error_code"] == "WORKER_OVERLOADED"  # the worker's code
    assert r.json()["details"]["attempts"] == 3 and r.headers["Retry-After"] == "3"
    assert time.monotonic() - t < 30  # two backoffs (0.1 s, doubling), not an unbounded wait
    # Recovers after two 503s.
    ctl.always, ctl.script = None, [503, 503]
    r = await enhance(c)
    assert r.status_code == 200 and r.json()["execution_metadata"]["attempts"] == 3


@pytest.mark.parametrize("status,code", [(400, "TOKEN_LIMIT_EXCEEDED"), (401, "UNAUTHORIZED"), (500, "INTERNAL_ERROR")])
async def test_no_retry_on_4xx_and_other_5xx(sqlite_url, make_gateway, fake_workers, status, code):
    app, c, [(ctl, _, _)] = await gateway_with(make_gateway, sqlite_url, fake_workers, max_attempts=4)
    ctl.script = [status]
    r = await enhance(c)
    assert len(ctl.calls) == 1
    assert r.status_code == status and r.json()["error_code"] == code
    assert r.json()["details"] == {"from": "w1"} and r.json()["suggested_action"] == "worker says so"


async def test_read_timeout_gives_worker_timeout(sqlite_url, make_gateway, fake_workers):
    app, c, [(ctl, _, _)] = await gateway_with(make_gateway, sqlite_url, fake_workers, read_timeout_s=0.3,
                                               max_attempts=3)
    ctl.delay_s = 120.0  # waiting for the worker would take two minutes; the bound below has slack for any load
    t = time.monotonic()
    r = await enhance(c)
    assert r.status_code == 504 and r.json()["error_code"] == "WORKER_TIMEOUT"
    assert time.monotonic() - t < 60  # not waited for
    await until_called(ctl)
    assert len(ctl.calls) == 1  # not retried


async def test_spent_deadline_gives_worker_timeout(sqlite_url, make_gateway, fake_workers):
    # 1,000 attempts with 0.1-0.2 s between them would take minutes: only the deadline ends it.
    app, c, [(ctl, _, _)] = await gateway_with(make_gateway, sqlite_url, fake_workers, request_timeout_s=0.5,
                                               max_attempts=1000, breaker_failures=100_000, backoff_initial_s=0.1,
                                               backoff_max_s=0.2)
    ctl.always = 503
    t = time.monotonic()
    r = await enhance(c)
    assert r.status_code == 504 and r.json()["error_code"] == "WORKER_TIMEOUT", r.text
    assert time.monotonic() - t < 60 and len(ctl.calls) < 1000
    await until_called(ctl)  # on a loaded machine the first call may not even have reached the worker


async def test_redirects_are_not_followed(sqlite_url, make_gateway, fake_workers):
    app, c, [(ctl, _, _)] = await gateway_with(make_gateway, sqlite_url, fake_workers)
    target, tsrv = fake_workers("target")
    ctl.redirect_to = tsrv.url + "/enhance"
    r = await enhance(c)
    assert r.status_code == 503 and r.json()["error_code"] == "WORKER_UNAVAILABLE"
    assert "redirect" in r.json()["error"] and target.calls == [] and len(ctl.calls) == 1
    ctl.redirect_to = "http://169.254.169.254/latest/meta-data/"
    assert (await enhance(c)).json()["details"]["worker_status"] == 307


class ManualClock:
    """The breaker's clock, moved by the test: the cooldown passes when the test says so, not
    when the machine gets to it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_circuit_breaker_with_a_single_worker(sqlite_url, make_gateway, fake_workers):
    app, c, [(ctl, _, wid)] = await gateway_with(make_gateway, sqlite_url, fake_workers, max_attempts=3,
                                                 breaker_failures=2, breaker_cooldown_s=1.5)
    st = app.state.gateway.registry.workers[wid]
    st.breaker.clock = clock = ManualClock()
    ctl.always = 503
    r = await enhance(c)
    assert r.status_code == 503 and len(ctl.calls) == 2  # the circuit opened after 2 failures
    assert r.json()["error_code"] == "WORKER_UNAVAILABLE" and r.json()["details"]["circuit"] == "open"
    assert st.breaker.state == "open"
    # Fail fast: no call reaches the worker while the circuit is open.
    for _ in range(5):
        r = await enhance(c)
        assert r.status_code == 503 and r.json()["details"]["circuit"] == "open"
        assert r.headers["Retry-After"] == "2"  # 1.5 s of cooldown left, rounded up
    assert len(ctl.calls) == 2
    clock.now += 1.0
    assert (await enhance(c)).headers["Retry-After"] == "1" and len(ctl.calls) == 2
    # After the cooldown one probe goes through; success closes the circuit.
    ctl.always = None
    clock.now += 0.5
    r = await enhance(c)
    assert r.status_code == 200 and st.breaker.state == "closed" and len(ctl.calls) == 3
    # A failing probe opens it again at once.
    ctl.always = 503
    st.breaker.failure(), st.breaker.failure()
    clock.now += 1.5
    r = await enhance(c)
    assert r.status_code == 503 and len(ctl.calls) == 4 and st.breaker.state == "open"
    assert r.json()["error_code"] == "WORKER_UNAVAILABLE" and r.json()["details"]["circuit"] == "open"


async def test_failover_when_a_worker_is_killed(sqlite_url, make_gateway, fake_workers):
    app, c, workers = await gateway_with(make_gateway, sqlite_url, fake_workers, names=("a", "b"),
                                         breaker_failures=2)
    (ca, sa, ida), (cb, sb, idb) = workers
    for i in range(6):
        assert (await enhance(c, f"warm {i}")).status_code == 200
    assert ca.calls and cb.calls  # both served: least loaded, ties taken in turn
    assert len(ca.calls) == len(cb.calls) == 3
    sa.kill()
    results = await asyncio.gather(*(enhance(c, f"after {i}") for i in range(12)))
    assert [r.status_code for r in results] == [200] * 12
    assert all(r.json()["execution_metadata"]["worker_id"] == idb for r in results)
    reg = app.state.gateway.registry
    await reg.check_all()
    assert reg.workers[ida].healthy is False and reg.workers[idb].healthy is True
    assert all(st.in_flight == 0 for st in reg.workers.values())
