"""SIGTERM on a real `pureinfer worker` process: ready turns false, new work gets 503, the
requests in flight, text and image alike, finish, then the process exits 0 — or, when the drain
timeout passes with work still in flight, exits 1 and logs how many requests were cut."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.live import free_port


@contextmanager
def worker(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`pureinfer worker ARGS` on a free port, once it reports ready; killed if still running."""
    port = free_port()
    env = {**os.environ, "PUREINFER_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([sys.executable, "-m", "pureinfer.cli", "worker", "--port", str(port), *args], env=env,
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
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _until(cond: Callable[[], bool], what: str, bound_s: float = 60.0) -> None:
    end = time.monotonic() + bound_s
    while not cond():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.05)


def _in_flight(url: str) -> int:
    return httpx.get(url + "/status", timeout=5).json()["performance"]["requests_in_flight"]


def test_sigterm_drains_then_exits_zero(cache_dir: Path) -> None:
    with worker("--demo", "--cache-dir", str(cache_dir), "--drain-timeout-s", "240") as (proc, url):
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
        _until(lambda: httpx.get(url + "/health/ready", timeout=5).status_code == 503, "draining after SIGTERM")
        ready = httpx.get(url + "/health/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["state"] == "draining"
        refused = httpx.post(url + "/chat", json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 2},
                             timeout=5)
        assert refused.status_code == 503 and refused.json()["error_code"] == "WORKER_UNAVAILABLE"
        t.join(timeout=300)
        assert result["last"] == "data: [DONE]"
        assert result["final"]["tokens_generated"] == 1900
        assert proc.wait(timeout=60) == 0


def test_sigterm_lets_an_image_request_finish_and_refuses_new_ones(image_model_dir: Path, tmp_path: Path) -> None:
    args = ("--role", "image", "--image-model", str(image_model_dir), "--device", "cpu",
            "--cache-dir", str(tmp_path), "--drain-timeout-s", "240")
    with worker(*args) as (proc, url):
        result: dict = {}
        body = {"prompt": "a lighthouse at dusk", "width": 256, "height": 256, "steps": 12, "seed": 9,
                "output": "b64_json"}
        t = threading.Thread(target=lambda: result.update(r=httpx.post(url + "/generate", json=body, timeout=300)))
        t.start()
        # The image request holds an admission permit like any text request, so drain waits for it.
        _until(lambda: _in_flight(url) == 1, "the image request was admitted")
        proc.send_signal(signal.SIGTERM)
        _until(lambda: httpx.get(url + "/health/ready", timeout=5).json()["state"] == "draining", "draining")
        refused = httpx.post(url + "/generate", json={**body, "steps": 2}, timeout=5)
        assert refused.status_code == 503 and refused.json()["error_code"] == "WORKER_UNAVAILABLE"
        t.join(timeout=300)
        r = result["r"]
        assert r.status_code == 200, r.text
        image = r.json()["images"][0]
        assert image["seed"] == 9 and base64.b64decode(image["b64_json"]).startswith(b"\x89PNG")
        assert proc.wait(timeout=60) == 0


def test_drain_timeout_with_work_in_flight_exits_non_zero(cache_dir: Path) -> None:
    with worker("--demo", "--cache-dir", str(cache_dir), "--drain-timeout-s", "0") as (proc, url):
        streaming = threading.Event()

        def in_flight() -> None:
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1900, "min_tokens": 1900,
                    "stream": True}
            try:
                with httpx.stream("POST", url + "/chat", json=body, timeout=300) as r:
                    for ln in r.iter_lines():
                        if ln.startswith("data: "):
                            streaming.set()
            except httpx.TransportError:
                pass  # cut at exit: the point of this test

        t = threading.Thread(target=in_flight)
        t.start()
        assert streaming.wait(60), "the in-flight request never started streaming"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 1
        t.join(timeout=60)
        logs = [json.loads(line) for line in proc.stderr.read().decode().splitlines() if line.startswith("{")]
        cut = [rec for rec in logs if rec.get("requests_cut") is not None]
        assert cut and cut[0]["requests_cut"] == 1 and cut[0]["level"] == "ERROR", logs
