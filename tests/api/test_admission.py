"""The one admission gate: per-kind limits, readiness, permits returned exactly once — also by a
streaming response cancelled before its body began (issue 9, defect 3)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pureinfer.api.admission import Admission
from pureinfer.engines.demo.echo import EchoTextEngine
from pureinfer.errors import WorkerOverloaded, WorkerUnavailable
from pureinfer.worker.app import create_app
from tests.support.worker import make_settings, msgs


def test_limits_are_per_kind_and_permits_return_once() -> None:
    ready = True
    gate = Admission({"text": 2, "image": 1}, is_ready=lambda: ready)
    a, b = gate.acquire("text"), gate.acquire("text")
    image = gate.acquire("image")
    with pytest.raises(WorkerOverloaded) as info:
        gate.acquire("text")
    assert info.value.details == {"kind": "text", "in_flight": 2, "limit": 2}
    with pytest.raises(WorkerOverloaded):
        gate.acquire("image")
    assert gate.in_flight == 3
    a.release()
    a.release()  # idempotent: a second release frees nothing more
    assert gate.counts == {"text": 1, "image": 1}
    with gate.acquire("text"):
        assert gate.counts["text"] == 2
    assert gate.counts["text"] == 1
    ready = False  # starting or draining: nothing is admitted, whatever the room
    b.release()
    with pytest.raises(WorkerUnavailable):
        gate.acquire("text")
    image.release()
    assert gate.in_flight == 0


def test_limits_follow_the_settings_the_engines_are_sized_from(cache_dir: Path) -> None:
    s = make_settings(cache_dir, max_running_requests=3, max_queued_requests=5)
    assert Admission.for_settings(s, lambda: True).limits == {"text": 8, "image": 5}


def _scope(path: str, body: bytes) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 40000), "server": ("testserver", 80)}


async def _client_gone_before_the_first_byte(app: Any, path: str, payload: dict[str, Any]) -> list[str]:
    """One request whose client disconnects at once, while the response start is still being
    sent: the response is cancelled before its body iterator takes a step."""
    body = json.dumps(payload).encode()
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[str] = []
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"] == "http.response.start":
            await never.wait()  # a gone client: the first write never completes

    await app(_scope(path, body), receive, send)
    return sent


@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions"])
def test_stream_cancelled_before_its_body_starts_returns_its_permit(cache_dir: Path, path: str) -> None:
    settings = make_settings(cache_dir, max_running_requests=1, max_queued_requests=1)
    app = create_app(settings, text_engines={"qwen_instruct": EchoTextEngine()})
    payload = {"messages": msgs(), "max_tokens": 4, "stream": True}
    with TestClient(app) as client:
        gate = app.state.runtime.admission
        for _ in range(3):  # more than the gate's capacity of 2: a leak would end in WORKER_OVERLOADED
            sent = client.portal.call(_client_gone_before_the_first_byte, app, path, payload)
            assert sent == ["http.response.start"]  # it was a streaming response, cut before its body
            assert gate.in_flight == 0
        r = client.post(path, json={**payload, "stream": False})
        assert r.status_code == 200, r.text
