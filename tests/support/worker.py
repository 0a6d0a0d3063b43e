"""Worker settings and a worker client on the tiny demo text model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pureinfer.settings import WorkerSettings

API_KEY = "test-key-1"
OTHER_KEY = "test-key-2"


def make_settings(cache_dir: Path, **overrides: Any) -> WorkerSettings:
    """A demo chat worker's settings (the tiny text model in `cache_dir`), with `overrides`."""
    base: dict[str, Any] = {"demo": True, "cache_dir": cache_dir, "role": "chat", "log_prompts": "preview"}
    base.update(overrides)
    return WorkerSettings(**base)


@pytest.fixture(scope="module")
def client(cache_dir: Path) -> Iterator[TestClient]:
    """A worker on the tiny demo model with two API keys and no signing secret."""
    from pureinfer.worker.app import create_app

    app = create_app(make_settings(cache_dir, api_keys=[API_KEY, OTHER_KEY]))
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as c:
        yield c


def msgs(text: str = "A beautiful sunset") -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are an expert prompt engineer."},
            {"role": "user", "content": text}]
