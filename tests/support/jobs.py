"""Helpers for the queue tests with real processes: a redis-server of the test's own (for the
restart test: never the shared one), workers in queue mode started as `pureinfer worker`, and
polling for job conditions."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.support.live import free_port
from tests.support.product import ProductProcess

SHARED_REDIS = "redis://127.0.0.1:6379/0"


class RedisServer:
    """redis-server on a free port with its data in `directory`, durable (appendonly, fsync
    always) so that a restart keeps every stream: what a production queue runs with."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: self.ping(), "redis-server to answer", timeout_s)
        return self

    def ping(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # redis flushes its append-only file and exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 120, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout_s} s")
        time.sleep(every_s)


def queue_worker(logs: Path, cache_dir: Path, redis_url: str, prefix: str, *extra: str,
                 role: str = "chat", name: str | None = None) -> ProductProcess:
    """`pureinfer worker --demo --queue ... --no-http` with one thread (the host has two cores)."""
    name = name or f"worker-{uuid.uuid4().hex[:6]}"
    return ProductProcess(name, ["worker", "--demo", "--role", role, "--cache-dir", str(cache_dir),
                                 "--threads", "1", "--queue", redis_url, "--queue-prefix", prefix, "--no-http",
                                 *extra], logs).start()


def queue_ready(p: ProductProcess) -> bool:
    return '"queue_mode"' in p.stderr


def drop_prefix(url: str, prefix: str) -> None:
    r = redis.Redis.from_url(url)
    with contextlib.suppress(redis.RedisError):
        keys = list(r.scan_iter(f"{prefix}:*"))
        if keys:
            r.delete(*keys)
    r.close()


def poll_job(http: httpx.Client, job_id: str, until: Callable[[dict[str, Any]], bool], what: str,
             timeout_s: float = 180, headers: dict[str, str] | None = None) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        r = http.get(f"/jobs/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        job = r.json()
        return job if until(job) else None
    return wait_for(check, f"{what} of job {job_id}", timeout_s)


def cache_with_demo_text(root: Path, demo_text_dir: Path) -> Path:
    (root / "demo-models").mkdir(parents=True, exist_ok=True)
    link = root / "demo-models" / "text"
    if not link.exists():
        link.symlink_to(demo_text_dir)
    return root


def stop_all(processes: list[ProductProcess]) -> None:
    for p in processes:
        p.kill()


def running(processes: list[ProductProcess]) -> Iterator[ProductProcess]:
    return (p for p in processes if p.proc is not None and p.proc.poll() is None)
