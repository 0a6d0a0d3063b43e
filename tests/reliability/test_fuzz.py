"""Bounded schemathesis fuzzing of every operation in each app's OpenAPI document, authenticated
(tests/support/fuzz.py): the worker in each role on the demo models, and the gateway in front of a
demo worker. Zero 5xx, every 4xx the coded envelope. `scripts/fuzz.py` runs the full count
(2,000 requests per app; figures in RELIABILITY.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fuzz import fuzz_app
from tests.support.targets import (
    ADMIN_KEY,
    REG_SECRET,
    WORKER_KEY,
    WORKER_SECRET,
    demo_cache,
    gateway_server,
    worker_server,
)

CI_EXAMPLES = 40  # per app; enough to reach every operation in both generation modes


@pytest.fixture(scope="module")
def fuzz_cache(tmp_path_factory: pytest.TempPathFactory, demo_text_dir: Path, image_model_dir: Path) -> Path:
    return demo_cache(tmp_path_factory.mktemp("fuzz-cache"), demo_text_dir, image_model_dir)


def _assert_clean(report) -> None:
    assert report.requests >= CI_EXAMPLES
    assert not report.failures, "\n".join(report.failures[:20])
    assert not [s for s in report.statuses if s >= 500]


@pytest.mark.parametrize("role", ["chat", "image", "all"])
def test_worker_fuzz(role: str, fuzz_cache: Path, tmp_path: Path) -> None:
    with worker_server(role, fuzz_cache, tmp_path / "files") as w:
        report = fuzz_app(f"worker {role}", w.url, examples=CI_EXAMPLES, key=WORKER_KEY, secret=WORKER_SECRET, seed=1,
                          cap_image_steps=role != "chat", image_worker=role == "image")
    _assert_clean(report)
    # every operation of the document was called at least once
    assert len(report.by_operation) >= 8, report.by_operation


def test_gateway_fuzz(fuzz_cache: Path, tmp_path: Path) -> None:
    with worker_server("all", fuzz_cache, tmp_path / "files") as w, gateway_server(tmp_path, [w.url]) as g:
        report = fuzz_app("gateway", g.url, examples=CI_EXAMPLES, key=ADMIN_KEY, secret=REG_SECRET, seed=1,
                          cap_image_steps=True)
    _assert_clean(report)
    assert len(report.by_operation) >= 10, report.by_operation
