"""Shared fixtures: the tiny demo models (built once per session, offline) and, through the
plugins below, worker clients and the image fixtures. The offline switches are set here, once,
before anything imports transformers: no test reaches a model hub."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest_plugins = ["tests.support.worker", "tests.support.image"]


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
