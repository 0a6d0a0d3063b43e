"""A real uvicorn server in a background thread, on 127.0.0.1 and a free port, for tests that
need real HTTP: client disconnects, the official `openai` client, concurrent streams."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app: Any, port: int | None = None, lifespan: str = "on") -> None:
        self.app = app
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    lifespan=lifespan, timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        return self.start()

    def start(self, timeout: float = 120) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("server failed to start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"server did not start in {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def kill(self) -> None:
        """Stop now: open connections are dropped, in-flight requests are not waited for."""
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(timeout=10)

    def __exit__(self, *exc: object) -> None:
        self.stop()
