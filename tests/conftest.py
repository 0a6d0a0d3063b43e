"""Shared fixtures: the tiny demo models (built once per session, offline) and, through the
plugins below, worker clients and the image fixtures. The offline switches are set here, once,
before anything imports transformers: no test reaches a model hub."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import logging  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from pureinfer.logging import configure_logging  # noqa: E402

pytest_plugins = ["tests.support.worker", "tests.support.image", "tests.support.serve"]


@pytest.fixture(scope="session", autouse=True)
def cli_logging() -> Iterator[None]:
    """Every test runs under the logging `pureinfer worker` and `pureinfer gateway` install
    (`configure_logging(settings.log_level)`, INFO by default: the JSON formatter on stderr), so
    every INFO record is built and formatted as in production. Under pytest's own level they were
    never built, and a log call that failed at INFO (the gateway's /chat answered 500 to every
    request that way) went unseen."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("INFO")
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir whose demo-models/text holds the tiny text model (what `--demo` serves)."""
    from pureinfer.engines.demo.build import ensure_demo_models

    root = tmp_path_factory.mktemp("pureinfer-cache")
    ensure_demo_models(root / "demo-models", text=True, image=False)
    return root


@pytest.fixture(scope="session")
def demo_text_dir(cache_dir: Path) -> Path:
    return cache_dir / "demo-models" / "text"
