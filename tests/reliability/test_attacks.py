"""Attacks not covered elsewhere (RELIABILITY.md maps every attack to its test): worker URLs
written as decimal, octal, hex or short IPv4 numbers and as IPv4-mapped IPv6 (resolved by the
real resolver, as the gateway does; no network), and a revoked key on both apps."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pureinfer.errors import PureInferError
from pureinfer.gateway.workers.urls import UrlPolicy
from pureinfer.security import sign
from tests.support.gateway import ADMIN_KEY
from tests.support.targets import WORKER_SECRET, demo_cache, gateway_server, worker_server

METADATA_FORMS = ["http://2852039166/", "http://0251.0376.0251.0376/", "http://0xa9fea9fe/", "http://169.254.43518/",
                  "http://0251.254.169.254/", "http://[::ffff:a9fe:a9fe]/", "http://[0:0:0:0:0:ffff:169.254.169.254]/"]
LOOPBACK_FORMS = ["http://2130706433:8000", "http://0177.0.0.1:8000", "http://0x7f.1:8000", "http://127.1:8000",
                  "http://[::ffff:127.0.0.1]:8000"]


def refusal(policy: UrlPolicy, url: str) -> str:
    with pytest.raises(PureInferError) as info:
        policy.validate(url)
    assert info.value.code.value == "INVALID_PAYLOAD"
    return info.value.message


@pytest.mark.parametrize("url", METADATA_FORMS)
def test_metadata_address_in_any_notation_is_never_allowed(url: str) -> None:
    assert "never allowed" in refusal(UrlPolicy(["0.0.0.0/0", "::/0"]), url)


@pytest.mark.parametrize("url", LOOPBACK_FORMS)
def test_loopback_in_any_notation_needs_the_allowlist(url: str) -> None:
    assert "not in the worker allowlist" in refusal(UrlPolicy(["10.0.0.0/8"]), url)


def test_the_gateway_refuses_them_through_its_admin_api(tmp_path: Path) -> None:
    with gateway_server(tmp_path, [], worker_allowlist=["10.0.0.0/8"]) as g:
        for url in METADATA_FORMS + LOOPBACK_FORMS:
            r = httpx.post(f"{g.url}/workers", json={"url": url, "worker_type": "chat", "models": ["m"]},
                           headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60, trust_env=False)
            assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD", (url, r.text)


def test_a_revoked_key_is_refused_on_both_apps(tmp_path: Path, demo_text_dir: Path) -> None:
    """Revoking a key is restarting without it: the old key is then refused like any wrong one."""
    cache = demo_cache(tmp_path / "cache", demo_text_dir)
    with worker_server("chat", cache, tmp_path / "f", api_keys=["new-key"]) as w, \
            gateway_server(tmp_path, [], api_keys=["new-caller"], admin_keys=["new-admin"]) as g:
        h = {"Authorization": "Bearer old-key", **sign(WORKER_SECRET, "GET", "/worker/info", b"")}
        r = httpx.get(f"{w.url}/worker/info", headers=h, timeout=60, trust_env=False)
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHORIZED"
        h = {"Authorization": "Bearer new-key", **sign(WORKER_SECRET, "GET", "/worker/info", b"")}
        assert httpx.get(f"{w.url}/worker/info", headers=h, timeout=60, trust_env=False).status_code == 200
        for path, key in (("/templates", ADMIN_KEY), ("/templates", "caller-key")):
            r = httpx.get(f"{g.url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=60, trust_env=False)
            assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHORIZED"
        r = httpx.post(f"{g.url}/chat", json={"message": "hi"}, headers={"Authorization": "Bearer caller-key"},
                       timeout=60, trust_env=False)
        assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHORIZED"
