"""End to end with the real worker app on the tiny demo model, over real loopback HTTP: a worker
registers itself with a gateway (`--gateway`), another is added by an admin; enhance and chat
(JSON and SSE) go through; one worker is killed while requests are running and the others fail
over to the survivor."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from pureinfer.gateway.app import create_app
from pureinfer.settings import WorkerSettings
from pureinfer.worker.app import create_app as create_worker_app
from tests.support.gateway import (
    ADMIN,
    CALLER,
    REG_SECRET,
    WORKER_KEY,
    WORKER_SECRET,
    gateway_settings,
    tpl,
)
from tests.support.live import LiveServer, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


def real_worker(cache_dir: Path, gateway_url: str | None = None) -> LiveServer:
    port = free_port()
    settings = WorkerSettings(demo=True, cache_dir=cache_dir, role="chat", api_keys=[WORKER_KEY],
                              signing_secret=WORKER_SECRET, port=port, gateway_url=gateway_url,
                              gateway_secret=REG_SECRET if gateway_url else None,
                              worker_url=f"http://127.0.0.1:{port}", heartbeat_s=0.5)
    return LiveServer(create_worker_app(settings, text_engines=None), port=port).start()


async def test_real_workers_registration_enhance_chat_and_failover(cache_dir, tmp_path, database_url):
    gw_settings = gateway_settings(tmp_path, database_url, health_interval_s=0.3, breaker_failures=2)
    gateway = LiveServer(create_app(gw_settings)).start()
    w1 = real_worker(cache_dir, gateway_url=gateway.url)  # registers itself
    w2 = real_worker(cache_dir)
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as c:
            await c.post("/templates", json=tpl(token_limit=12), headers=ADMIN)
            await c.post("/templates", json=tpl(template_name="chat", target_model="chat", job_type="chat",
                                                use_case="chat", token_limit=12), headers=ADMIN)
            r = await c.post("/workers", json={"url": w2.url, "models": ["qwen_instruct"]}, headers=ADMIN)
            assert r.status_code == 201 and r.json()["healthy"] is True
            deadline = time.monotonic() + 20
            while True:
                workers = (await c.get("/workers", headers=ADMIN)).json()
                if {w["url"] for w in workers if w["healthy"]} == {w1.url, w2.url}:
                    break
                assert time.monotonic() < deadline, workers
                await asyncio.sleep(0.1)
            ids = {w["url"]: w["id"] for w in workers}
            assert {w["source"] for w in workers} == {"registered", "admin"}

            r = await c.post("/enhance-prompt", json={"prompt": "a castle in the rain", "seed": 1}, headers=CALLER)
            assert r.status_code == 200, r.text
            md = r.json()["execution_metadata"]
            assert md["model_used"] == "qwen_instruct" and 1 <= md["tokens_generated"] <= 12
            assert md["prompt_tokens"] > 5 and len(md["prompt_sha256"]) == 64 and md["worker_id"] in ids.values()

            # A worker's own error code passes through (max_tokens over the worker's limit).
            too_long = await c.post("/chat", json={"message": "hi", "max_tokens": 30000}, headers=CALLER)
            assert too_long.status_code == 400
            assert too_long.json()["error_code"] in ("TOKEN_LIMIT_EXCEEDED", "INVALID_PAYLOAD")

            async with c.stream("POST", "/chat", json={"message": "hello there", "stream": True},
                                headers=CALLER) as s:
                assert s.status_code == 200
                body = (await s.aread()).decode()
            assert body.rstrip().endswith("data: [DONE]") and '"text"' in body

            # Kill one worker while requests are running: every request still succeeds.
            async def one(i: int) -> httpx.Response:
                return await c.post("/enhance-prompt", json={"prompt": f"scene {i}"}, headers=CALLER)
            running = [asyncio.create_task(one(i)) for i in range(16)]
            await asyncio.sleep(0.05)
            await asyncio.to_thread(w1.kill)
            results = await asyncio.gather(*running)
            assert [r.status_code for r in results] == [200] * 16, [r.text for r in results if r.status_code != 200]
            after = [await one(100 + i) for i in range(6)]
            assert all(r.status_code == 200 and r.json()["execution_metadata"]["worker_id"] == ids[w2.url]
                       for r in after)
            deadline = time.monotonic() + 60  # a bound on waiting, not a speed goal
            while True:
                states = {w["url"]: w["healthy"] for w in (await c.get("/workers", headers=ADMIN)).json()}
                if states == {w1.url: False, w2.url: True}:
                    break
                assert time.monotonic() < deadline, states
                await asyncio.sleep(0.1)

            deadline = time.monotonic() + 60  # a bound on waiting, not a speed goal
            while True:  # the audit writer is asynchronous: wait for its batch
                audit = (await c.get("/audit?limit=1000", headers=ADMIN)).json()["records"]
                if sum(r["status"] == 200 for r in audit) == 1 + 1 + 16 + 6 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            health = (await c.get("/health")).json()
            assert sum(r["status"] == 200 for r in audit) == 1 + 1 + 16 + 6, json.dumps(health)
            assert [r["error_code"] for r in audit if r["status"] != 200] == [r.json()["error_code"]
                                                                          for r in [too_long]]
    finally:
        w1.kill()
        w2.stop()
        gateway.stop()
