"""`pureinfer serve`'s keys and plan (the process itself: tests/smoke/test_serve.py)."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

from pureinfer.serve import KEYS_FILE, load_or_create_keys, plan
from tests.support.live import free_port


def test_keys_are_made_once_kept_0600_and_reused(tmp_path: Path) -> None:
    first = load_or_create_keys(tmp_path)
    path = tmp_path / KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_keys(tmp_path) == first
    assert len({first.admin_key, first.api_key, first.worker_api_key, first.worker_signing_secret,
                first.registration_secret}) == 5
    path.chmod(0o644)
    load_or_create_keys(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened again


def test_an_admin_key_given_wins_and_is_kept(tmp_path: Path) -> None:
    first = load_or_create_keys(tmp_path)
    mine = load_or_create_keys(tmp_path, admin_key="my-admin-key")
    assert mine.admin_key == "my-admin-key" and mine.api_key == first.api_key
    assert json.loads((tmp_path / KEYS_FILE).read_text())["admin_key"] == "my-admin-key"
    assert load_or_create_keys(tmp_path).admin_key == "my-admin-key"


def test_the_workers_are_loopback_workers_of_the_gateway(tmp_path: Path) -> None:
    port = free_port()
    p = plan({"demo": True, "cache_dir": tmp_path, "port": port})
    try:
        assert p.console_url == f"http://127.0.0.1:{port}/ui"
        assert p.sockets["gateway"].getsockname() == ("127.0.0.1", port)
        g = p.gateway
        assert g.admin_keys == [p.keys.admin_key] and p.keys.api_key in g.api_keys
        for role, w in p.workers.items():
            assert (w.role.value, w.host, w.demo) == (role, "127.0.0.1", True)
            assert w.port == p.sockets[role].getsockname()[1]
            assert w.api_keys == [g.worker_api_key] and w.signing_secret == g.worker_signing_secret
            assert (w.gateway_url, w.gateway_secret) == (f"http://127.0.0.1:{port}", g.registration_secret)
            assert w.worker_url == f"http://127.0.0.1:{w.port}"
    finally:
        for s in p.sockets.values():
            s.close()


def test_a_port_in_use_is_said_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "pureinfer.cli", "serve", "--demo", "--cache-dir", str(tmp_path),
                              "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "demo-models").exists()  # refused before anything was built
