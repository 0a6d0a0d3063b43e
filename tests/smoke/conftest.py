"""The product started as the README says, once for the smoke tests: `pureinfer templates import
--starter`, then `pureinfer gateway` and `pureinfer worker --demo --role all` (registering itself
with the gateway), each a real process with the CLI's default logging. Only the ports, the cache
directory (the session's demo models) and the keys are chosen here; everything else is default.
The processes live while the tests of this folder run; stopping them is checked too (exit codes,
no traceback at shutdown)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.live import free_port
from tests.support.product import ProductProcess, get_ok

WORKER_KEY = "smoke-worker-key"
WORKER_SECRET = "smoke-worker-secret"
CALLER_KEY = "smoke-caller-key"
ADMIN_KEY = "smoke-admin-key"
REGISTRATION_SECRET = "smoke-registration-secret"


@dataclass
class Product:
    worker: ProductProcess
    gateway: ProductProcess
    worker_url: str
    gateway_url: str


@pytest.fixture(scope="package")
def smoke_cache_dir(tmp_path_factory: pytest.TempPathFactory, demo_text_dir: Path, image_model_dir: Path) -> Path:
    """A cache dir whose demo-models are the session's (built once): `--demo` finds them built."""
    root = tmp_path_factory.mktemp("smoke-cache")
    (root / "demo-models").mkdir()
    (root / "demo-models" / "text").symlink_to(demo_text_dir)
    (root / "demo-models" / "image").symlink_to(image_model_dir)
    return root


def _registered(gateway_url: str, worker_url: str) -> bool:
    try:
        r = httpx.get(f"{gateway_url}/workers", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5,
                      trust_env=False)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and any(w["url"] == worker_url and w["source"] == "registered" for w in r.json())


@pytest.fixture(scope="package")
def product(smoke_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Product]:
    logs = tmp_path_factory.mktemp("smoke-logs")
    cache = str(smoke_cache_dir)
    worker_port, gateway_port = free_port(), free_port()
    while gateway_port == worker_port:
        gateway_port = free_port()
    worker_url, gateway_url = f"http://127.0.0.1:{worker_port}", f"http://127.0.0.1:{gateway_port}"
    templates = ProductProcess("templates-import", ["templates", "import", "--starter", "--cache-dir", cache], logs)
    worker = ProductProcess("worker", [
        "worker", "--demo", "--role", "all", "--port", str(worker_port), "--cache-dir", cache,
        "--api-key", WORKER_KEY, "--signing-secret", WORKER_SECRET,
        "--gateway", gateway_url, "--gateway-secret", REGISTRATION_SECRET], logs)
    gateway = ProductProcess("gateway", [
        "gateway", "--port", str(gateway_port), "--cache-dir", cache, "--api-key", CALLER_KEY,
        "--admin-key", ADMIN_KEY, "--worker-api-key", WORKER_KEY, "--worker-signing-secret", WORKER_SECRET,
        "--registration-secret", REGISTRATION_SECRET], logs)
    started: list[ProductProcess] = []
    try:
        started.append(worker.start())  # the slowest to start: it loads its models meanwhile
        started.append(templates.start())
        assert templates.run_to_end() == 0, templates.log_tail()
        started.append(gateway.start())
        gateway.wait_until(lambda: get_ok(f"{gateway_url}/health"), "health")
        worker.wait_until(lambda: get_ok(f"{worker_url}/health/ready"), "readiness")
        gateway.wait_until(lambda: _registered(gateway_url, worker_url), "registration of the worker")
        yield Product(worker, gateway, worker_url, gateway_url)
        exit_codes = {p.name: p.stop() for p in (worker, gateway)}
    finally:
        for p in started:
            p.kill()  # only what is still running: a failed start, or a process SIGTERM did not end
    # Both stop on SIGTERM as a supervisor expects: the worker drains, the gateway shuts down; 0.
    assert exit_codes == {"worker": 0, "gateway": 0}, \
        "\n\n".join(p.log_tail() for p in (worker, gateway))
    problems = {p.name: p.problems() for p in (templates, worker, gateway) if p.problems()}
    assert not problems, f"tracebacks or errors in the logs: {problems}"
