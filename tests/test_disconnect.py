"""A non-streaming request whose client disconnects is cancelled, not run to max_tokens or its
deadline (issue 9, defect 4). Over a real HTTP server; the model's forward pass is held at the
request's first step, so the request cannot finish before the disconnect, and nothing here
depends on how fast anything runs."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pureinfer.worker.app import create_app
from tests.support.live import LiveServer
from tests.support.worker import make_settings, msgs


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[LiveServer]:
    with LiveServer(create_app(make_settings(cache_dir))) as s:
        yield s


def _until(cond: Callable[[], bool], what: str, bound_s: float = 60.0) -> None:
    """Wait for a condition (the bound only keeps a broken build from hanging)."""
    end = time.monotonic() + bound_s
    while not cond():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.01)


def _post(port: int, path: str, payload: dict[str, Any]) -> socket.socket:
    body = json.dumps(payload).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return sock


@pytest.mark.parametrize("path", ["/chat", "/v1/chat/completions"])
def test_client_disconnect_cancels_a_non_streaming_request(server: LiveServer, path: str) -> None:
    runtime = server.app.state.runtime
    engine = runtime.text.engines["qwen_instruct"]
    in_step, release = threading.Event(), threading.Event()

    def hold(_module: Any, _args: Any) -> None:  # the engine thread waits inside the step
        in_step.set()
        release.wait(60)

    handle = engine.model.register_forward_pre_hook(hold)
    try:
        sock = _post(server.port, path, {"messages": msgs(), "max_tokens": 200, "min_tokens": 200})
        assert in_step.wait(60), "the request never reached the engine"
        steps = engine.steps
        assert runtime.admission.in_flight == 1 and engine.num_running == 1
        sock.close()  # the client goes away while its request is mid-step
        # The handler notices, cancels the work and returns the permit while the step still runs.
        _until(lambda: runtime.admission.in_flight == 0, "the request was cancelled")
    finally:
        handle.remove()
        release.set()
    # The engine drops the request at the next step: one more step at most, not 200 tokens.
    _until(lambda: engine.num_running == 0 and engine.num_waiting == 0, "the engine dropped the request")
    assert engine.steps - steps <= 1
