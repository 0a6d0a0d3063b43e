"""SIGTERM on a real `pureinfer worker` process: ready turns false, new work gets 503, the
request in flight finishes, then the process exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.support.live import free_port


def test_sigterm_drains_then_exits_zero(cache_dir: Path) -> None:
    port = free_port()
    env = {**os.environ, "PUREINFER_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "pureinfer.cli", "worker", "--demo", "--cache-dir", str(cache_dir),
                             "--port", str(port), "--drain-timeout-s", "240"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "worker did not become ready"
            time.sleep(0.2)

        result: dict = {}
        streaming = threading.Event()

        def in_flight() -> None:
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1900, "min_tokens": 1900,
                    "stream": True}
            lines = []
            with httpx.stream("POST", url + "/chat", json=body, timeout=300) as r:
                for ln in r.iter_lines():
                    if ln.startswith("data: "):
                        lines.append(ln)
                        streaming.set()
            result["last"] = lines[-1]
            result["final"] = json.loads(lines[-2][6:])

        t = threading.Thread(target=in_flight)
        t.start()
        assert streaming.wait(60), "the in-flight request never started streaming"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        ready = httpx.get(url + "/health/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["state"] == "draining"
        refused = httpx.post(url + "/chat", json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
                             timeout=5)
        assert refused.status_code == 503 and refused.json()["error_code"] == "WORKER_UNAVAILABLE"
        t.join(timeout=300)
        assert result["last"] == "data: [DONE]"
        assert result["final"]["tokens_generated"] == 1900
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
