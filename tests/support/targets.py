"""Real servers to fuzz and load: a demo worker of a role (chat, image, all) and a gateway in front
of workers, each a uvicorn server on a loopback port (tests/support/live.py), authenticated as in
production (worker: API key + request signatures; gateway: caller/admin keys, signed worker calls,
the starter templates imported). Shared by tests/reliability and scripts/fuzz.py, scripts/load.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway import ADMIN_KEY, CALLER_KEY, REG_SECRET, WORKER_KEY, WORKER_SECRET
from tests.support.live import LiveServer


def demo_cache(root: Path, text_dir: Path | None = None, image_dir: Path | None = None) -> Path:
    """A cache dir for `--demo`: links to already built demo models when given (else the worker
    builds them on first start, offline)."""
    (root / "demo-models").mkdir(parents=True, exist_ok=True)
    for name, built in (("text", text_dir), ("image", image_dir)):
        link = root / "demo-models" / name
        if built is not None and not link.exists():
            link.symlink_to(built)
    return root


def worker_settings(role: str, cache_dir: Path, files_dir: Path, **overrides: Any) -> Any:
    from pureinfer.settings import WorkerSettings

    values: dict[str, Any] = dict(
        demo=True, role=role, cache_dir=cache_dir, device="cpu", api_keys=[WORKER_KEY],
        signing_secret=WORKER_SECRET, log_prompts="preview", max_tokens_limit=32,
        image_min_size=64, image_max_size=64, image_max_batch=4, image_batch_wait_ms=5,
        storage_dir=files_dir, image_warmup=False, request_timeout_s=600)
    values.update(overrides)
    return WorkerSettings(**values)


@contextlib.contextmanager
def worker_server(role: str, cache_dir: Path, files_dir: Path, **overrides: Any) -> Iterator[LiveServer]:
    from pureinfer.worker.app import create_app

    with LiveServer(create_app(worker_settings(role, cache_dir, files_dir, **overrides))) as srv:
        yield srv


@contextlib.contextmanager
def gateway_server(tmp: Path, worker_urls: list[str], database_url: str | None = None,
                   **overrides: Any) -> Iterator[LiveServer]:
    """A gateway with the starter templates and `worker_urls` added by an admin (role all)."""
    from pureinfer.db.store import open_store
    from pureinfer.gateway.app import create_app
    from pureinfer.gateway.cli import STARTER
    from pureinfer.gateway.settings import GatewaySettings
    from pureinfer.gateway.templates.service import import_yaml

    database_url = database_url or f"sqlite:///{tmp / 'gateway.db'}"
    store = open_store(database_url)
    import_yaml(store, STARTER.read_text(encoding="utf-8"))
    store.dispose()
    values: dict[str, Any] = dict(
        cache_dir=tmp / "gateway-cache", database_url=database_url, api_keys=[CALLER_KEY], admin_keys=[ADMIN_KEY],
        worker_api_key=WORKER_KEY, worker_signing_secret=WORKER_SECRET, registration_secret=REG_SECRET,
        health_interval_s=1.0, registry_refresh_s=1.0, audit_flush_interval_s=0.2)
    values.update(overrides)
    with LiveServer(create_app(GatewaySettings(**values))) as srv:
        for url in worker_urls:
            r = httpx.post(f"{srv.url}/workers", json={"url": url, "worker_type": "all", "models": ["qwen_instruct"]},
                           headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60, trust_env=False)
            r.raise_for_status()
        yield srv


__all__ = ["ADMIN_KEY", "CALLER_KEY", "REG_SECRET", "WORKER_KEY", "WORKER_SECRET", "demo_cache",
           "gateway_server", "worker_server", "worker_settings"]
