"""`kill -9` of a worker process under load behind the gateway: every answer is a success or a
coded error (a request on the killed worker fails over to the other one before its answer
started, or fails with its code: a stream already relaying ends with an error event), the
gateway never drops a caller's connection, and afterwards every request succeeds on the survivor."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import httpx

from tests.support.live import free_port
from tests.support.loadgen import GATEWAY_MIX, run_load
from tests.support.product import ProductProcess, get_ok
from tests.support.targets import CALLER_KEY, WORKER_KEY, WORKER_SECRET, demo_cache, gateway_server


def test_kill_9_of_a_worker_under_load(tmp_path: Path, demo_text_dir: Path) -> None:
    cache = demo_cache(tmp_path / "cache", demo_text_dir)
    workers: list[tuple[ProductProcess, str]] = []
    try:
        for i in range(2):
            port = free_port()
            proc = ProductProcess(f"worker-{i}", ["worker", "--demo", "--role", "chat", "--port", str(port),
                                                  "--cache-dir", str(cache), "--api-key", WORKER_KEY,
                                                  "--signing-secret", WORKER_SECRET], tmp_path).start()
            workers.append((proc, f"http://127.0.0.1:{port}"))
        for proc, url in workers:
            proc.wait_until(lambda url=url: get_ok(f"{url}/health/ready"), "readiness", timeout_s=300)
        with gateway_server(tmp_path, [url for _, url in workers]) as g:
            victim = workers[0][0]
            killed = {"done": False}

            def tick(elapsed: float) -> None:
                if elapsed >= 3 and not killed["done"]:
                    os.kill(victim.proc.pid, signal.SIGKILL)
                    killed["done"] = True

            report = asyncio.run(run_load("gateway", g.url, GATEWAY_MIX, clients=16, duration_s=10,
                                          key=CALLER_KEY, on_tick=tick))
            assert killed["done"] and victim.proc.wait(timeout=30) == -signal.SIGKILL
            coded = re.compile(r"^(200|200 stream error [A-Z_]+|5\d\d [A-Z_]+)$")
            assert all(coded.match(k) and "INTERNAL_ERROR" not in k and "None" not in k
                       for k in report.statuses), report.statuses
            assert report.statuses["200"] > 0
            after = [httpx.post(f"{g.url}/chat", json={"message": f"after {i}", "max_tokens": 8},
                                headers={"Authorization": f"Bearer {CALLER_KEY}"}, timeout=120, trust_env=False)
                     for i in range(4)]
            assert [r.status_code for r in after] == [200] * 4, [r.text for r in after]
            assert {r.json()["execution_metadata"]["worker_id"] for r in after} == {
                r.json()["execution_metadata"]["worker_id"] for r in after[:1]}
    finally:
        for proc, _ in workers:
            proc.kill()
