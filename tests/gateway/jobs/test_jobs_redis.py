"""Jobs over Redis Streams with real processes: workers in queue mode (`pureinfer worker --demo
--queue ... --no-http --threads 1`) on the shared redis-server (a key prefix per test) or on a
redis-server of the test's own (the restart test), and the gateway on real HTTP.

Every wait polls a condition with a generous timeout; nothing depends on timing."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from pureinfer.gateway.app import create_app
from tests.support.gateway import ADMIN, CALLER, gateway_settings, tpl
from tests.support.jobs import (
    SHARED_REDIS,
    RedisServer,
    cache_with_demo_text,
    drop_prefix,
    poll_job,
    queue_ready,
    queue_worker,
)
from tests.support.live import LiveServer, free_port
from tests.support.product import ProductProcess, get_ok

# Real worker processes start slowly on a loaded 2-core machine: a generous per-test limit.
pytestmark = [pytest.mark.redis, pytest.mark.timeout(1200)]
FINISHED = ("succeeded", "failed", "cancelled")
CHAT_TEMPLATE = tpl(template_name="chat_sfw", target_model="chat", job_type="chat", use_case="chat",
                    system_prompt="You chat.", token_limit=8)


@pytest.fixture(scope="module")
def qcache(tmp_path_factory: pytest.TempPathFactory, demo_text_dir: Path) -> Path:
    return cache_with_demo_text(tmp_path_factory.mktemp("queue-cache"), demo_text_dir)


@pytest.fixture
def prefix() -> Iterator[str]:
    p = f"pi-jobs-{uuid.uuid4().hex[:10]}"
    yield p
    drop_prefix(SHARED_REDIS, p)


@pytest.fixture
def procs() -> Iterator[list[ProductProcess]]:
    started: list[ProductProcess] = []
    yield started
    for p in started:
        p.kill()


@contextlib.contextmanager
def gateway(tmp_path: Path, db: str, redis_url: str, prefix: str, **kw: Any) -> Iterator[LiveServer]:
    """A gateway on real HTTP (uvicorn in a thread) with the templates the jobs use."""
    settings = gateway_settings(tmp_path, db, queue=redis_url, queue_prefix=prefix, job_poll_interval_s=0.1, **kw)
    with LiveServer(create_app(settings, start_background=False)) as srv:
        with client(srv) as c:
            for t in (tpl(token_limit=8), CHAT_TEMPLATE):
                r = c.post("/templates", json=t, headers=ADMIN)
                assert r.status_code in (201, 400, 409), r.text
        yield srv


def client(srv: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=30, trust_env=False, headers=CALLER)


def submit(c: httpx.Client, body: dict[str, Any], **headers: str) -> str:
    r = c.post("/jobs", json=body, headers={**CALLER, **headers})
    assert r.status_code == 202, r.text
    return r.json()["job_id"]


def long_text_job(c: httpx.Client) -> str:
    """A job that runs long enough to be caught running: 2000 greedy tokens of the demo model."""
    return submit(c, {"type": "text", "params": {"message": "hi", "max_tokens": 2000, "temperature": 0}})


def test_100_jobs_through_3_workers_complete_exactly_once(tmp_path, sqlite_url, qcache, prefix, procs):
    logs = tmp_path / "logs"
    logs.mkdir()
    procs += [queue_worker(logs, qcache, SHARED_REDIS, prefix, "--queue-concurrency", "4") for _ in range(3)]
    with gateway(tmp_path, sqlite_url, SHARED_REDIS, prefix) as gw, \
            client(gw) as c:
        ids = [submit(c, {"type": "enhance", "params": {"prompt": f"fox number {i}"}}) for i in range(100)]
        for p in procs:
            p.wait_until(lambda p=p: queue_ready(p), "queue mode")
        jobs = [poll_job(c, i, lambda j: j["status"] in FINISHED, "the end", timeout_s=600) for i in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 100, [j for j in jobs if j["status"] != "succeeded"][:2]
    assert [j["attempts"] for j in jobs] == [1] * 100  # nothing died: each delivered once
    workers = {p.name: p for p in procs}
    assert {j["worker_id"] for j in jobs} <= {w for w in _consumers(workers)}
    r = redis.Redis.from_url(SHARED_REDIS, decode_responses=True)
    # One recorded result per job; nothing dead-lettered; the stream holds nothing unfinished.
    assert len(list(r.scan_iter(f"{prefix}:result:*"))) == 100
    assert r.xlen(f"{prefix}:dead:chat") == 0 and r.xlen(f"{prefix}:jobs:chat") == 0
    r.close()


def _consumers(workers: dict[str, ProductProcess]) -> set[str]:
    """The consumer names the workers logged when they started queue mode."""
    import json

    out = set()
    for p in workers.values():
        for line in p.stderr.splitlines():
            if '"queue_mode"' in line:
                out.add(json.loads(line)["consumer"])
    return out


def _kill_runner(job: dict[str, Any], workers: list[ProductProcess]) -> ProductProcess:
    """kill -9 the worker process running `job` (its consumer name carries its pid)."""
    pid = int(job["worker_id"].split("-")[-2])
    [w] = [w for w in workers if w.proc is not None and w.proc.pid == pid]
    os.killpg(pid, signal.SIGKILL)
    w.proc.wait()  # type: ignore[union-attr]
    return w


def test_kill_9_mid_job_redelivers_and_a_poison_job_is_dead_lettered(tmp_path, sqlite_url, qcache, prefix, procs):
    logs = tmp_path / "logs"
    logs.mkdir()
    opts = ("--queue-visibility-timeout-s", "3", "--queue-max-attempts", "2")
    # Three workers start together (start-up is the slow part); each kill leaves the others.
    procs += [queue_worker(logs, qcache, SHARED_REDIS, prefix, *opts) for _ in range(3)]
    with gateway(tmp_path, sqlite_url, SHARED_REDIS, prefix, queue_visibility_timeout_s=3, queue_max_attempts=2) \
            as gw, client(gw) as c:
        for p in procs:
            p.wait_until(lambda p=p: queue_ready(p), "queue mode")
        # Killed once mid-job: delivered again (attempt 2) to another worker, and it completes.
        job = long_text_job(c)
        _kill_runner(poll_job(c, job, lambda j: j["status"] == "running" and j["worker_id"], "running"), procs)
        done = poll_job(c, job, lambda j: j["status"] in FINISHED, "the end", timeout_s=300)
        assert (done["status"], done["attempts"]) == ("succeeded", 2), done
        assert done["result"]["tokens_generated"] >= 1

        # A poison job kills every worker that takes it: after max attempts, the dead letters.
        poison = long_text_job(c)
        for attempt in (1, 2):
            running = poll_job(c, poison, lambda j, a=attempt: j["status"] == "running" and j["attempts"] == a
                               and j["worker_id"], f"attempt {attempt}")
            _kill_runner(running, procs)
        procs.append(queue_worker(logs, qcache, SHARED_REDIS, prefix, *opts))  # finds it past max attempts
        dead = poll_job(c, poison, lambda j: j["status"] in FINISHED, "the dead letter", timeout_s=300)
    assert dead["status"] == "failed" and dead["error"]["details"]["attempts"] == 2, dead
    r = redis.Redis.from_url(SHARED_REDIS, decode_responses=True)
    assert [f["job_id"] for _i, f in r.xrange(f"{prefix}:dead:chat")] == [poison]
    r.close()


def test_redis_restarted_mid_run_loses_no_accepted_job(tmp_path, sqlite_url, qcache, procs):
    own = RedisServer(tmp_path).start()
    prefix = "restart"
    try:
        logs = tmp_path / "logs"
        logs.mkdir()
        procs += [queue_worker(logs, qcache, own.url, prefix) for _ in range(2)]
        with gateway(tmp_path, sqlite_url, own.url, prefix) as gw, \
                client(gw) as c:
            before = [submit(c, {"type": "enhance", "params": {"prompt": f"before {i}"}}) for i in range(20)]
            for p in procs:
                p.wait_until(lambda p=p: queue_ready(p), "queue mode")
            poll_job(c, before[0], lambda j: j["status"] != "queued", "a start")
            own.restart()  # while jobs run and wait
            after = [submit(c, {"type": "enhance", "params": {"prompt": f"after {i}"}}) for i in range(20)]
            jobs = [poll_job(c, i, lambda j: j["status"] in FINISHED, "the end", timeout_s=600)
                    for i in before + after]
    finally:
        for p in procs:
            p.kill()
        own.stop()
    assert [j["status"] for j in jobs] == ["succeeded"] * 40, [j for j in jobs if j["status"] != "succeeded"][:2]
    assert all('"queue_reconnect"' in p.stderr or '"queue_unreachable"' in p.stderr for p in procs)


@contextlib.contextmanager
def gateway_process(logs: Path, db: str, redis_url: str, prefix: str, name: str) -> Iterator[str]:
    """`pureinfer gateway --queue redis://...` as a real process; its URL."""
    port = free_port()
    p = ProductProcess(name, ["gateway", "--port", str(port), "--cache-dir", str(logs / name), "--database-url", db,
                              "--queue", redis_url, "--queue-prefix", prefix, "--api-key", CALLER["Authorization"][7:],
                              "--admin-key", ADMIN["Authorization"][7:]], logs).start()
    url = f"http://127.0.0.1:{port}"
    try:
        p.wait_until(lambda: get_ok(f"{url}/health"), "health")
        yield url
    finally:
        p.kill()
    assert not p.problems(), p.problems()


def _audit_rows(c: httpx.Client, request_id: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    """The audit rows of one request, once there is one (the writer flushes in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = c.get("/audit", params={"request_id": request_id}, headers=ADMIN).json()["records"]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_two_gateway_processes_behave_as_one(tmp_path, pg_schemas, qcache, prefix, procs):
    db = pg_schemas()
    logs = tmp_path / "logs"
    logs.mkdir()
    procs.append(queue_worker(logs, qcache, SHARED_REDIS, prefix))
    with gateway_process(logs, db, SHARED_REDIS, prefix, "gw-one") as one, \
            gateway_process(logs, db, SHARED_REDIS, prefix, "gw-two") as two, \
            httpx.Client(base_url=one, timeout=30, trust_env=False, headers=CALLER) as a, \
            httpx.Client(base_url=two, timeout=30, trust_env=False, headers=CALLER) as b:
        for t in (tpl(token_limit=8), CHAT_TEMPLATE):
            assert a.post("/templates", json=t, headers=ADMIN).status_code == 201
        # One Idempotency-Key on both gateways: one job.
        body = {"type": "enhance", "params": {"prompt": "shared"}}
        ids = {submit(a, body, **{"Idempotency-Key": "same"}), submit(b, body, **{"Idempotency-Key": "same"})}
        assert len(ids) == 1
        job = ids.pop()
        # Submitted on one, read on the other.
        done = poll_job(b, job, lambda j: j["status"] in FINISHED, "the end", timeout_s=300)
        assert done["status"] == "succeeded" and done["result"]["enhanced_prompt"] is not None
        # A running job submitted to one is cancelled through the other: the worker stops it.
        long = long_text_job(a)
        poll_job(b, long, lambda j: j["status"] == "running", "running", timeout_s=300)
        r = b.post(f"/jobs/{long}/cancel")
        assert r.status_code == 200 and r.json()["cancel_requested"] is True, r.text
        cancelled = poll_job(a, long, lambda j: j["status"] in FINISHED, "the end", timeout_s=120)
        assert cancelled["status"] == "cancelled" and cancelled["result"] is None
        # Either gateway lists it among the cancelled ones.
        listed = a.get("/jobs", params={"status": "cancelled"}).json()["jobs"]
        assert [j["job_id"] for j in listed] == [long]
        # Each job left one audit row, written by whichever gateway stored its end.
        for j, endpoint, status in ((done, "jobs/enhance", 200), (cancelled, "jobs/text", 499)):
            rows = _audit_rows(a, j["request_id"])
            assert [(r["endpoint"], r["status"]) for r in rows] == [(endpoint, status)], rows
        row = _audit_rows(b, done["request_id"])[0]
        assert row["template_name"] == "sdxl_instruct_sfw" and row["messages_sha256"] and row["prompt_sha256"]
        assert row["worker_id"] == done["worker_id"] and row["response_sha256"] and "seed" in row["sampling"]
    procs[0].wait_until(lambda: '"job_cancelled"' in procs[0].stderr, "the worker's cancel log")


def test_sigterm_hands_the_running_job_back(tmp_path, sqlite_url, qcache, prefix, procs):
    logs = tmp_path / "logs"
    logs.mkdir()
    with gateway(tmp_path, sqlite_url, SHARED_REDIS, prefix) as gw, client(gw) as c:
        job = long_text_job(c)
        first = queue_worker(logs, qcache, SHARED_REDIS, prefix, "--drain-timeout-s", "0.5")
        procs.append(first)
        poll_job(c, job, lambda j: j["status"] == "running", "running")
        first.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        # The drain is too short for 2000 tokens: the job is handed back, not lost or failed.
        assert first.proc.wait(timeout=120) == 1  # type: ignore[union-attr]
        poll_job(c, job, lambda j: j["status"] == "queued", "the hand-back")
        procs.append(queue_worker(logs, qcache, SHARED_REDIS, prefix))
        done = poll_job(c, job, lambda j: j["status"] in FINISHED, "the end", timeout_s=300)
    assert (done["status"], done["attempts"]) == ("succeeded", 1), done  # a hand-back is no failed attempt
    assert "Traceback" not in first.stderr, first.log_tail()


def test_an_image_job_on_a_queue_worker_reports_progress(tmp_path, sqlite_url, qcache, image_model_dir, prefix,
                                                         procs):
    if not (qcache / "demo-models" / "image").exists():
        (qcache / "demo-models" / "image").symlink_to(image_model_dir)
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    # HTTP on as well: local image files are served (and their URLs built) at the worker's address.
    worker = ProductProcess("image-worker", ["worker", "--demo", "--role", "image", "--cache-dir", str(qcache),
                                             "--threads", "1", "--queue", SHARED_REDIS, "--queue-prefix", prefix,
                                             "--port", str(port)], logs).start()
    procs.append(worker)
    with gateway(tmp_path, sqlite_url, SHARED_REDIS, prefix) as gw, client(gw) as c:
        job = submit(c, {"type": "image", "params": {"prompt": "a red castle", "width": 64, "height": 64,
                                                     "steps": 4, "seed": 5}})
        done = poll_job(c, job, lambda j: j["status"] in FINISHED, "the end", timeout_s=300)
        r = c.post("/jobs", json={"type": "image", "params": {"prompt": "x", "enhance": True}})
        rows = _audit_rows(c, done["request_id"])
    assert done["status"] == "succeeded", done
    # Its audit row: the image parameters, the seeds and the asset URLs, as the sync route writes.
    assert [(a["endpoint"], a["status"], a["worker_type"], a["seeds"]) for a in rows] == [("jobs/image", 200,
                                                                                          "image", [5])]
    assert rows[0]["asset_urls"] == [done["result"]["images"][0]["url"]] and rows[0]["image_params"]["steps"] == 4
    assert done["progress"] == {"step": 4, "total": 4}  # progress events reached the job
    image = done["result"]["images"][0]
    assert image["seed"] == 5 and image["url"].startswith(f"http://127.0.0.1:{port}/files/")
    assert get_ok(image["url"])
    # Enhancing first is the gateway's work, not a queue worker's: refused on the Redis queue.
    assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "params.enhance"
