"""`pureinfer serve --demo` as a real process with its default logging, once per test session,
for the serve smoke test and the console's browser tests. Only the port and the cache directory
(the session's demo models, already built) are chosen; the keys are the ones it generates and
prints. Stopping it is checked at the end: exit code 0 and no traceback or ERROR line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.live import free_port
from tests.support.product import ProductProcess


@dataclass
class Served:
    process: ProductProcess
    url: str
    cache_dir: Path
    admin_key: str
    api_key: str

    @property
    def stdout(self) -> str:
        return self.process.stdout_path.read_text(errors="replace")


def printed(stdout: str, what: str) -> str | None:
    """A value `serve` printed on its own line: `  admin key: KEY`."""
    m = re.search(rf"^\s*{re.escape(what)}:\s+(\S+)", stdout, re.MULTILINE)
    return m.group(1) if m else None


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory, demo_text_dir: Path, image_model_dir: Path) -> Iterator[Served]:
    cache = tmp_path_factory.mktemp("serve-cache")
    (cache / "demo-models").mkdir()
    (cache / "demo-models" / "text").symlink_to(demo_text_dir)
    (cache / "demo-models" / "image").symlink_to(image_model_dir)
    logs = tmp_path_factory.mktemp("serve-logs")
    port = free_port()
    proc = ProductProcess("serve", ["serve", "--demo", "--port", str(port), "--cache-dir", str(cache)], logs)
    proc.start()
    try:
        proc.wait_until(lambda: "ready in" in proc.stdout_path.read_text(errors="replace"), "its ready line",
                        timeout_s=240)
        out = proc.stdout_path.read_text(errors="replace")
        admin, api = printed(out, "admin key"), printed(out, "API key")
        assert admin and api, out
        yield Served(proc, f"http://127.0.0.1:{port}", cache, admin, api)
        code = proc.stop()
    finally:
        proc.kill()
    assert code == 0, proc.log_tail()
    assert not proc.problems(), f"tracebacks or errors in the log: {proc.problems()}"
