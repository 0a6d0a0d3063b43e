"""A short load (seconds, not minutes) through real HTTP on loopback: many concurrent callers,
mixed streaming and not, against a worker with small admission limits (so the designed 503 with
Retry-After happens) and against a gateway in front of two workers. Only success and that 503 are
allowed; afterwards no admission slot is left taken. Timings are not asserted: scripts/load.py
measures them (figures in RELIABILITY.md)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.support.loadgen import GATEWAY_MIX, WORKER_MIX, run_load
from tests.support.targets import (
    CALLER_KEY,
    WORKER_KEY,
    WORKER_SECRET,
    demo_cache,
    gateway_server,
    worker_server,
)

SECONDS = 8
CLIENTS = 24


@pytest.fixture(scope="module")
def load_cache(tmp_path_factory: pytest.TempPathFactory, demo_text_dir: Path) -> Path:
    return demo_cache(tmp_path_factory.mktemp("load-cache"), demo_text_dir)


def _slots_free(*servers) -> None:
    deadline = time.monotonic() + 60
    for srv in servers:
        admission = srv.app.state.runtime.admission
        while admission.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert admission.in_flight == 0, dict(admission.counts)


def test_worker_under_load_answers_success_or_the_designed_503(load_cache: Path, tmp_path: Path) -> None:
    with worker_server("chat", load_cache, tmp_path / "files", max_running_requests=4, max_queued_requests=4) as w:
        report = asyncio.run(run_load("worker", w.url, WORKER_MIX, clients=CLIENTS, duration_s=SECONDS,
                                      key=WORKER_KEY, secret=WORKER_SECRET))
        _slots_free(w)
    assert not report.unexpected, report.unexpected[:10]
    assert report.statuses["200"] > 0 and report.streams > 0
    assert any(k.startswith("503 ") for k in report.statuses), report.statuses  # the refusal was exercised


def test_gateway_in_front_of_two_workers_under_load(load_cache: Path, tmp_path: Path) -> None:
    kw = dict(max_tokens_limit=2000, max_running_requests=4, max_queued_requests=8)
    with worker_server("chat", load_cache, tmp_path / "f1", **kw) as w1, \
            worker_server("chat", load_cache, tmp_path / "f2", **kw) as w2, \
            gateway_server(tmp_path, [w1.url, w2.url]) as g:
        report = asyncio.run(run_load("gateway", g.url, GATEWAY_MIX, clients=CLIENTS, duration_s=SECONDS,
                                      key=CALLER_KEY))
        _slots_free(w1, w2)
    assert not report.unexpected, report.unexpected[:10]
    assert report.statuses["200"] > 0 and report.streams > 0
