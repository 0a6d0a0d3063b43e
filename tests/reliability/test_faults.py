"""Faults seen through real HTTP (uvicorn on loopback): an engine exception and a device
out-of-memory in the middle of a batch, clients that disconnect mid-stream or read slowly,
oversized bodies and headers on both apps. Engine-level versions live in
tests/engines/text/test_lifecycle.py; the database outage in tests/gateway/audit/test_audit.py;
`kill -9` of a worker process under load in test_kill.py."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from pureinfer.asgi import MAX_HEADER_BYTES
from pureinfer.security import sign
from tests.support.targets import (
    CALLER_KEY,
    WORKER_KEY,
    WORKER_SECRET,
    demo_cache,
    gateway_server,
    worker_server,
)


@pytest.fixture(scope="module")
def fault_cache(tmp_path_factory: pytest.TempPathFactory, demo_text_dir: Path) -> Path:
    return demo_cache(tmp_path_factory.mktemp("fault-cache"), demo_text_dir)


@pytest.fixture(scope="module")
def worker(fault_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    with worker_server("chat", fault_cache, tmp_path_factory.mktemp("files"), max_tokens_limit=256) as w:
        yield w


def signed(path: str, payload: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {"Authorization": f"Bearer {WORKER_KEY}", "Content-Type": "application/json",
                  **sign(WORKER_SECRET, "POST", path, body)}


def chat(url: str, max_tokens: int = 8, **extra: Any) -> httpx.Response:
    body, headers = signed("/chat", {"messages": [{"role": "user", "content": "a red kite"}],
                                     "max_tokens": max_tokens, **extra})
    return httpx.post(f"{url}/chat", content=body, headers=headers, timeout=120, trust_env=False)


def wait_for(cond, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"no {what} after {timeout_s} s"
        time.sleep(0.02)


def engine_of(srv) -> Any:
    text = srv.app.state.runtime.text
    return next(iter(text.engines.values()))


def idle(srv) -> bool:
    return srv.app.state.runtime.admission.in_flight == 0 and engine_of(srv).num_running == 0


def ready(url: str) -> bool:
    return httpx.get(f"{url}/health/ready", timeout=30, trust_env=False).status_code == 200


@pytest.mark.parametrize(("raised", "status", "code"), [
    (lambda: RuntimeError("a model bug (simulated)"), 500, "INTERNAL_ERROR"),
    (lambda: torch.OutOfMemoryError("CUDA out of memory (simulated)"), 503, "OUT_OF_MEMORY"),
])
def test_a_failing_step_fails_its_batch_only_and_the_worker_stays_ready(worker, raised, status, code) -> None:
    """Three requests run as one batch; one step of the model raises: each of them gets the coded
    error (OOM: 503 with Retry-After), the worker stays ready, and the next requests succeed."""
    eng = engine_of(worker)
    embeddings = eng.model.get_input_embeddings()
    armed = {"go": False}

    def fail_once(_module: Any, _args: Any) -> None:
        if armed["go"] and eng.num_running >= 3:
            armed["go"] = False
            hook.remove()
            raise raised()

    hook = embeddings.register_forward_pre_hook(fail_once)
    try:
        armed["go"] = True

        async def batch() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=worker.url, timeout=120, trust_env=False) as c:
                async def one(i: int) -> httpx.Response:
                    body, headers = signed("/chat", {"messages": [{"role": "user", "content": f"kite {i}"}],
                                                     "max_tokens": 200, "min_tokens": 200})
                    return await c.post("/chat", content=body, headers=headers)
                return await asyncio.gather(*(one(i) for i in range(3)))

        answers = asyncio.run(batch())
    finally:
        hook.remove()
    assert [r.status_code for r in answers] == [status] * 3, [r.text for r in answers]
    for r in answers:
        assert r.json()["error_code"] == code and r.json()["success"] is False and r.json()["request_id"]
        if status == 503:
            assert int(r.headers["retry-after"]) >= 1
    assert ready(worker.url)
    assert chat(worker.url).status_code == 200
    wait_for(lambda: idle(worker), "idle worker")


def test_clients_that_disconnect_mid_stream_or_read_slowly_leak_no_slot(worker) -> None:
    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=worker.url, timeout=120, trust_env=False) as c:
            async def leaves_early(i: int) -> str:
                body, headers = signed("/chat", {"messages": [{"role": "user", "content": f"leave {i}"}],
                                                 "max_tokens": 200, "min_tokens": 200, "stream": True})
                async with c.stream("POST", "/chat", content=body, headers=headers) as r:
                    assert r.status_code == 200
                    async for _ in r.aiter_raw():
                        break  # one chunk, then the connection goes
                return "left"

            async def reads_slowly(i: int) -> str:
                body, headers = signed("/chat", {"messages": [{"role": "user", "content": f"slow {i}"}],
                                                 "max_tokens": 40, "stream": True})
                chunks = []
                async with c.stream("POST", "/chat", content=body, headers=headers) as r:
                    async for chunk in r.aiter_raw(16):
                        chunks.append(chunk)
                        await asyncio.sleep(0.01)  # a slow reader: the server waits on the socket
                return b"".join(chunks).decode()

            return await asyncio.gather(*(leaves_early(i) for i in range(6)), *(reads_slowly(i) for i in range(2)))

    results = asyncio.run(run())
    assert results[:6] == ["left"] * 6
    for text in results[6:]:
        assert text.rstrip().endswith("data: [DONE]") and "error_code" not in text
    wait_for(lambda: idle(worker), "every slot back")  # cancelled within an engine step each
    assert chat(worker.url).status_code == 200


def test_gateway_stream_disconnect_frees_the_worker_slot(fault_cache: Path, tmp_path: Path) -> None:
    with worker_server("chat", fault_cache, tmp_path / "f", max_tokens_limit=1000) as w, \
            gateway_server(tmp_path, [w.url]) as g:
        async def run() -> None:
            async with httpx.AsyncClient(base_url=g.url, timeout=120, trust_env=False) as c:
                for i in range(4):
                    async with c.stream("POST", "/chat", json={"message": f"go {i}", "max_tokens": 500,
                                                               "stream": True},
                                        headers={"Authorization": f"Bearer {CALLER_KEY}"}) as r:
                        assert r.status_code == 200
                        async for _ in r.aiter_raw():
                            break

        asyncio.run(run())
        wait_for(lambda: idle(w), "the worker's slots back after the gateway's callers left")


@pytest.mark.parametrize("which", ["worker", "gateway"])
def test_oversized_bodies_and_headers_are_refused_with_the_envelope(which, worker, tmp_path: Path) -> None:
    if which == "worker":
        url, auth = worker.url, {"Authorization": f"Bearer {WORKER_KEY}"}
        cm = None
    else:
        cm = gateway_server(tmp_path, [], max_body_bytes=10_000)
        url, auth = cm.__enter__().url, {"Authorization": f"Bearer {CALLER_KEY}"}
    try:
        with httpx.Client(base_url=url, timeout=60, trust_env=False) as c:
            path = "/chat"
            big = c.post(path, content=b'{"x":"' + b"a" * 3_000_000 + b'"}',
                         headers={**auth, "Content-Type": "application/json", "X-Request-ID": "big-body"})
            assert big.status_code == 413, big.text
            assert big.json()["error_code"] == "INVALID_PAYLOAD" and big.json()["request_id"] == "big-body"
            assert big.json()["details"]["fields"][0]["field"] == "body"
            for headers in ({"X-Big": "a" * (MAX_HEADER_BYTES + 1)},
                            {f"X-H{i}": "a" * 100 for i in range(MAX_HEADER_BYTES // 100 + 1)}):
                r = c.post(path, json={"message": "hi"}, headers={**auth, **headers, "X-Request-ID": "big-headers"})
                assert r.status_code == 431, r.text
                assert r.json()["error_code"] == "INVALID_PAYLOAD" and r.json()["request_id"] == "big-headers"
                assert r.json()["details"]["fields"][0]["field"] == "headers"
            # Just under the limit is served as usual (the header limit is not a body limit).
            fine = c.get("/health/live" if which == "worker" else "/health", headers={"X-Fine": "a" * 16_000})
            assert fine.status_code == 200
    finally:
        if cm is not None:
            cm.__exit__(None, None, None)
