"""POST /jobs with the in-process queue: the gateway runs jobs on its registered workers (fake
ones here, real processes in tests/gateway/jobs/test_jobs_redis.py and the smoke test)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

from tests.support.gateway import ADMIN, CALLER, tpl

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def setup(make_gateway, url, fake_workers, **settings):
    app, c = await make_gateway(url, background=False, **settings)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    await c.post("/templates", json=tpl(template_name="chat_sfw", target_model="chat", job_type="chat",
                                        use_case="chat", system_prompt="You chat."), headers=ADMIN)
    ctl, srv = fake_workers("w")
    wid = (await c.post("/workers", json={"url": srv.url, "models": ["qwen_instruct"]}, headers=ADMIN)).json()["id"]
    return app, c, ctl, wid


async def wait_job(c, job_id: str, until: Any = None, timeout_s: float = 30) -> dict:
    """Poll GET /jobs/{id} until `until(job)` (default: finished)."""
    until = until or (lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
    deadline = time.monotonic() + timeout_s
    while True:
        r = await c.get(f"/jobs/{job_id}", headers=CALLER)
        assert r.status_code == 200, r.text
        job = r.json()
        if until(job):
            return job
        assert time.monotonic() < deadline, f"job never reached the condition: {job}"
        await asyncio.sleep(0.05)


async def test_the_seeds_camelcase_enhance_request_as_a_job(database_url, make_gateway, fake_workers):
    _app, c, ctl, wid = await setup(make_gateway, database_url, fake_workers)
    params = {"prompt": "a dragon over a lake", "jobType": "image", "format": "png", "quality": "high",
              "selectedModel": "qwen_instruct"}
    r = await c.post("/jobs", json={"type": "enhance", "params": params}, headers=CALLER)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued" and r.headers["location"] == f"/jobs/{r.json()['job_id']}"
    job = await wait_job(c, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    res = job["result"]
    assert res["enhanced_prompt"] == "[w] enhanced: a dragon over a lake"
    assert (res["success"], res["pure_inference"], res["original_prompt"]) == (True, True, params["prompt"])
    md = res["execution_metadata"]
    assert (md["template_name"], md["worker_id"], md["architecture"]) == ("sdxl_instruct_sfw", wid,
                                                                         "pure_inference_engine")
    assert job["attempts"] == 1 and job["started_at"] and job["finished_at"] and job["error"] is None
    # The worker received exactly the template's messages.
    assert ctl.calls[-1]["payload"]["messages"] == [{"role": "system", "content": "You write SDXL prompts."},
                                                    {"role": "user", "content": params["prompt"]}]


async def test_text_jobs_and_the_list(sqlite_url, make_gateway, fake_workers):
    _app, c, _ctl, _wid = await setup(make_gateway, sqlite_url, fake_workers)
    ids = []
    for i in range(3):
        r = await c.post("/jobs", json={"type": "text", "params": {"message": f"hi {i}", "max_tokens": 4}},
                         headers=CALLER)
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
    for i, job_id in enumerate(ids):
        job = await wait_job(c, job_id)
        assert job["status"] == "succeeded" and job["result"]["response"] == f"[w] enhanced: hi {i}"
        assert job["result"]["execution_metadata"]["template_name"] == "chat_sfw"
    listed = (await c.get("/jobs?status=succeeded&type=text", headers=CALLER)).json()
    assert {j["job_id"] for j in listed["jobs"]} == set(ids)
    assert (await c.get("/jobs?type=image", headers=CALLER)).json()["jobs"] == []


async def test_bad_jobs_get_coded_errors(sqlite_url, make_gateway, fake_workers):
    _app, c, _ctl, _wid = await setup(make_gateway, sqlite_url, fake_workers)
    r = await c.post("/jobs", json={"type": "enhance", "params": {"prompt": ""}}, headers=CALLER)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD"
    assert [f["field"] for f in r.json()["details"]["fields"]] == ["params.prompt"]
    r = await c.post("/jobs", json={"type": "text", "params": {"message": "x", "stream": True}}, headers=CALLER)
    assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "params.stream"
    r = await c.post("/jobs", json={"type": "video", "params": {}}, headers=CALLER)
    assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "type"
    r = await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "x"}, "callback_url": "http://x"},
                     headers=CALLER)
    assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "callback_url"
    r = await c.get("/jobs/nope", headers=CALLER)
    assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND"
    assert (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "x"}})).status_code == 401


async def test_idempotency_keys(database_url, make_gateway, fake_workers):
    _app, c, ctl, _wid = await setup(make_gateway, database_url, fake_workers)
    body = {"type": "enhance", "params": {"prompt": "one fox"}}
    first = await c.post("/jobs", json=body, headers={**CALLER, "Idempotency-Key": "k1"})
    again = await c.post("/jobs", json=body, headers={**CALLER, "Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    other = await c.post("/jobs", json={**body, "params": {"prompt": "two foxes"}},
                         headers={**CALLER, "Idempotency-Key": "k1"})
    assert other.status_code == 409 and other.json()["error_code"] == "INVALID_PAYLOAD"
    assert other.json()["details"]["fields"][0]["field"] == "Idempotency-Key"
    # Concurrent requests with one new key: one job.
    rs = await asyncio.gather(*[c.post("/jobs", json=body, headers={**CALLER, "Idempotency-Key": "k2"})
                                for _ in range(8)])
    assert {r.status_code for r in rs} == {202}
    assert len({r.json()["job_id"] for r in rs}) == 1
    await wait_job(c, rs[0].json()["job_id"])
    await wait_job(c, first.json()["job_id"])
    listed = (await c.get("/jobs", headers=CALLER)).json()["jobs"]
    assert len(listed) == 2
    assert len([call for call in ctl.calls if call["endpoint"] == "enhance"]) == 2


async def test_cancelling_running_and_queued_jobs(sqlite_url, make_gateway, fake_workers):
    app, c = await make_gateway(sqlite_url, background=False, job_concurrency=1)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    gate = threading.Event()
    ctl, srv = fake_workers("w", gate=gate)
    await c.post("/workers", json={"url": srv.url, "models": ["qwen_instruct"]}, headers=ADMIN)
    running = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "a"}}, headers=CALLER)).json()
    queued = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "b"}}, headers=CALLER)).json()
    await wait_job(c, running["job_id"], lambda j: j["status"] == "running" and len(ctl.calls) == 1)
    r = await c.post(f"/jobs/{queued['job_id']}/cancel", headers=CALLER)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await c.post(f"/jobs/{running['job_id']}/cancel", headers=CALLER)
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    job = await wait_job(c, running["job_id"])
    assert job["status"] == "cancelled" and job["error"]["error_code"] == "CANCELLED"
    gate.set()
    # The queued one never reached a worker; a finished job cannot be cancelled again.
    assert [call["payload"]["messages"][1]["content"] for call in ctl.calls] == ["a"]
    r = await c.post(f"/jobs/{running['job_id']}/cancel", headers=CALLER)
    assert r.status_code == 409 and r.json()["error_code"] == "INVALID_PAYLOAD"
    # Each cancelled job leaves one audit row (the queued one as well as the running one).
    for j in (running, queued):
        request_id = (await c.get(f"/jobs/{j['job_id']}", headers=CALLER)).json()["request_id"]
        rows = await audit_rows(app, c, request_id=request_id)
        assert [(r["endpoint"], r["status"], r["error_code"]) for r in rows] == [("jobs/enhance", 499, "CANCELLED")]


async def test_progress_events_over_sse(sqlite_url, make_gateway, fake_workers):
    _app, c, _ctl, _wid = await setup(make_gateway, sqlite_url, fake_workers)
    job_id = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "a"}}, headers=CALLER)).json()["job_id"]
    statuses = []
    async with c.stream("GET", f"/jobs/{job_id}/events", headers=CALLER) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                statuses.append(json.loads(line[5:])["status"])
    assert statuses[-1] == "succeeded" and statuses == sorted(set(statuses), key=statuses.index)
    assert (await c.get("/jobs/nope/events", headers=CALLER)).status_code == 404


async def test_a_job_fails_with_the_workers_coded_error(sqlite_url, make_gateway, fake_workers):
    _app, c, ctl, _wid = await setup(make_gateway, sqlite_url, fake_workers)
    ctl.script = [400]
    job_id = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "a"}}, headers=CALLER)).json()["job_id"]
    job = await wait_job(c, job_id)
    assert job["status"] == "failed" and job["error"]["error_code"] == "TOKEN_LIMIT_EXCEEDED"
    assert job["result"] is None


async def test_metrics_show_queue_depth_and_job_states(sqlite_url, make_gateway, fake_workers):
    _app, c, _ctl, _wid = await setup(make_gateway, sqlite_url, fake_workers)
    job_id = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "a"}}, headers=CALLER)).json()["job_id"]
    await wait_job(c, job_id)
    deadline = time.monotonic() + 30  # the snapshot is refreshed every few seconds
    while True:
        text = (await c.get("/metrics", headers=CALLER)).text
        if 'pureinfer_gateway_jobs{status="succeeded"} 1.0' in text or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert 'pureinfer_gateway_jobs{status="succeeded"} 1.0' in text
    assert 'pureinfer_gateway_queue_depth{worker_type="chat"} 0.0' in text
    assert 'pureinfer_gateway_queue_dead_letters{worker_type="image"} 0.0' in text


async def test_jobs_belong_to_the_caller_key_that_created_them(database_url, make_gateway, fake_workers):
    other = {"Authorization": "Bearer other-caller-key"}
    _app, c, _ctl, _wid = await setup(make_gateway, database_url, fake_workers,
                                      api_keys=["caller-key", "other-caller-key"])
    mine = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "mine"}}, headers=CALLER)).json()
    theirs = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "theirs"}}, headers=other)).json()
    await wait_job(c, mine["job_id"])
    job_id = mine["job_id"]
    # Another caller key: the job does not exist for it, wherever it asks.
    for r in (await c.get(f"/jobs/{job_id}", headers=other), await c.get(f"/jobs/{job_id}/events", headers=other),
              await c.post(f"/jobs/{job_id}/cancel", headers=other)):
        assert r.status_code == 404 and r.json()["error_code"] == "NOT_FOUND", r.text
    assert [j["job_id"] for j in (await c.get("/jobs", headers=CALLER)).json()["jobs"]] == [job_id]
    assert [j["job_id"] for j in (await c.get("/jobs", headers=other)).json()["jobs"]] == [theirs["job_id"]]
    # An admin key sees every caller's jobs.
    assert (await c.get(f"/jobs/{job_id}", headers=ADMIN)).status_code == 200
    assert {j["job_id"] for j in (await c.get("/jobs", headers=ADMIN)).json()["jobs"]} == {job_id, theirs["job_id"]}
    # So does an admin's browser session (the cookie, no key header).
    assert (await c.post("/session", json={"admin_key": "admin-key"})).status_code in (200, 201)
    assert (await c.get(f"/jobs/{theirs['job_id']}")).status_code == 200
    assert len((await c.get("/jobs")).json()["jobs"]) == 2
    assert (await c.get(f"/jobs/{theirs['job_id']}", headers=CALLER)).status_code == 404  # a key judges alone
    # Idempotency keys are per caller: the same key from another caller makes its own job.
    body = {"type": "enhance", "params": {"prompt": "same"}}
    a = (await c.post("/jobs", json=body, headers={**CALLER, "Idempotency-Key": "shared"})).json()
    b = (await c.post("/jobs", json=body, headers={**other, "Idempotency-Key": "shared"})).json()
    assert a["job_id"] != b["job_id"]


async def audit_rows(app, c, n: int = 1, timeout_s: float = 30, **query) -> list[dict]:
    """The audit rows matching `query`, once there are `n` of them (the row is written just after
    the job's end is stored, so a poll can see the end first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        await app.state.gateway.audit.flush()
        r = await c.get("/audit", params=query, headers=ADMIN)
        assert r.status_code == 200, r.text
        if len(r.json()["records"]) >= n or time.monotonic() > deadline:
            return r.json()["records"]
        await asyncio.sleep(0.05)


async def test_every_finished_job_leaves_one_audit_row(database_url, make_gateway, fake_workers):
    app, c, ctl, wid = await setup(make_gateway, database_url, fake_workers)
    ok = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "a fox", "seed": 7}},
                       headers=CALLER)).json()
    job = await wait_job(c, ok["job_id"])
    assert job["status"] == "succeeded", job
    [row] = await audit_rows(app, c, request_id=job["request_id"])
    assert (row["endpoint"], row["status"], row["error_code"]) == ("jobs/enhance", 200, None)
    assert (row["template_name"], row["template_version"], row["fallback_level"]) == ("sdxl_instruct_sfw", 1, 0)
    assert row["worker_id"] == wid and row["worker_type"] == "chat" and row["attempts"] == 1
    assert row["messages_sha256"] and row["response_sha256"] and row["sampling"]["seed"] == 7
    assert row["strategy"] == job["result"]["strategy"] and row["caller_key_id"]
    # A job the worker refused: one row with the worker's code.
    ctl.script = [400]
    bad = (await c.post("/jobs", json={"type": "text", "params": {"message": "hi"}}, headers=CALLER)).json()
    job = await wait_job(c, bad["job_id"])
    assert job["status"] == "failed"
    [row] = await audit_rows(app, c, request_id=job["request_id"])
    assert (row["endpoint"], row["error_code"], row["template_name"]) == ("jobs/text", "TOKEN_LIMIT_EXCEEDED",
                                                                         "chat_sfw")
    assert row["status"] == 400 and row["messages_sha256"]


async def test_a_job_waits_for_a_healthy_worker(sqlite_url, make_gateway, fake_workers):
    """Memory queue: a job submitted while no worker can take it stays queued (handed back with a
    backoff) and runs once a worker is registered; past --job-worker-wait-s it fails, coded."""
    app, c = await make_gateway(sqlite_url, background=False)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    job_id = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "patient fox"}},
                           headers=CALLER)).json()["job_id"]
    # It was tried and found no worker (logged), and is queued, not failed.
    waits = app.state.gateway.jobs._waiting
    await wait_job(c, job_id, lambda j: job_id in waits and j["status"] == "queued")
    ctl, srv = fake_workers("late")
    await c.post("/workers", json={"url": srv.url, "models": ["qwen_instruct"]}, headers=ADMIN)
    job = await wait_job(c, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["enhanced_prompt"] == "[late] enhanced: patient fox" and job["attempts"] == 1


async def test_a_job_fails_coded_once_the_worker_wait_is_over(sqlite_url, make_gateway):
    _app, c = await make_gateway(sqlite_url, background=False, job_worker_wait_s=0.0)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    job_id = (await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "x"}}, headers=CALLER)).json()
    job = await wait_job(c, job_id["job_id"])
    assert job["status"] == "failed" and job["error"]["error_code"] == "WORKER_UNAVAILABLE", job
