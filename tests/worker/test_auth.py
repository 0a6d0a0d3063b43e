"""API keys and HMAC request signatures: good, missing, wrong, stale, replayed, tampered."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from pureinfer.security import sign
from pureinfer.settings import WorkerSettings
from pureinfer.worker.app import create_app
from tests.support.worker import API_KEY, OTHER_KEY, make_settings, msgs

SECRET = "s3cret-for-signing"


@pytest.fixture(scope="module")
def signed_client(cache_dir: Path) -> Iterator[TestClient]:
    app = create_app(make_settings(cache_dir, api_keys=[API_KEY], signing_secret=SECRET))
    with TestClient(app) as c:
        yield c


def _post(c: TestClient, path: str, payload: dict, *, key: str | None = API_KEY, secret: str | None = SECRET,
          ts: int | None = None, body_override: bytes | None = None, headers: dict | None = None):
    body = json.dumps(payload).encode()
    h = {"Content-Type": "application/json"}
    if key:
        h["Authorization"] = f"Bearer {key}"
    if secret:
        h.update(sign(secret, "POST", path, body, ts))
    h.update(headers or {})
    return c.post(path, content=body_override if body_override is not None else body, headers=h)


def _unauthorized(r) -> str:
    assert r.status_code == 401, r.text
    assert r.json()["error_code"] == "UNAUTHORIZED"
    return r.json()["error"]


def test_keys(client: TestClient) -> None:
    p = {"messages": msgs(), "max_tokens": 2}
    assert client.post("/chat", json=p).status_code == 200
    assert client.post("/chat", json=p, headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 200
    assert "Missing" in _unauthorized(client.post("/chat", json=p, headers={"Authorization": ""}))
    assert "Invalid" in _unauthorized(client.post("/chat", json=p, headers={"Authorization": "Bearer wrong"}))
    _unauthorized(client.post("/chat", json=p, headers={"Authorization": "", "X-API-Key": "wrong"}))
    for path in ("/health", "/status", "/worker/info", "/metrics", "/v1/models"):
        _unauthorized(client.get(path, headers={"Authorization": ""}))
    for path in ("/health/live", "/health/ready"):
        assert client.get(path, headers={"Authorization": ""}).status_code == 200


def test_good_signature(signed_client: TestClient) -> None:
    r = _post(signed_client, "/chat", {"messages": msgs(), "max_tokens": 2})
    assert r.status_code == 200, r.text


def test_signature_refusals(signed_client: TestClient) -> None:
    p = {"messages": msgs(), "max_tokens": 2}
    assert "Missing" in _unauthorized(_post(signed_client, "/chat", p, secret=None))
    assert "Invalid" in _unauthorized(_post(signed_client, "/chat", p, secret="other-secret"))
    assert "expired" in _unauthorized(_post(signed_client, "/chat", p, ts=int(time.time()) - 301))
    assert "expired" in _unauthorized(_post(signed_client, "/chat", p, ts=int(time.time()) + 301))
    tampered = json.dumps({"messages": msgs("something else"), "max_tokens": 2}).encode()
    assert "Invalid" in _unauthorized(_post(signed_client, "/chat", p, body_override=tampered))
    # Signed for another path.
    body = json.dumps(p).encode()
    h = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", **sign(SECRET, "POST", "/enhance", body)}
    _unauthorized(signed_client.post("/chat", content=body, headers=h))
    # A valid key does not stand in for a signature, nor a signature for a key.
    _unauthorized(_post(signed_client, "/chat", p, key=None))


def test_replay_is_refused(signed_client: TestClient) -> None:
    body = json.dumps({"messages": msgs(), "max_tokens": 2}).encode()
    h = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json", **sign(SECRET, "POST", "/chat", body)}
    assert signed_client.post("/chat", content=body, headers=h).status_code == 200
    assert "Replayed" in _unauthorized(signed_client.post("/chat", content=body, headers=h))


def test_signed_get(signed_client: TestClient) -> None:
    h = {"Authorization": f"Bearer {API_KEY}", **sign(SECRET, "GET", "/worker/info", b"")}
    assert signed_client.get("/worker/info", headers=h).status_code == 200


def test_no_key_refuses_public_listen(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="without an API key"):
        WorkerSettings(host="0.0.0.0", cache_dir=tmp_path)
    assert WorkerSettings(host="0.0.0.0", insecure=True, cache_dir=tmp_path).insecure
    assert WorkerSettings(host="0.0.0.0", api_keys=["k"], cache_dir=tmp_path).api_keys == ["k"]
    assert WorkerSettings(host="127.0.0.1", cache_dir=tmp_path).host == "127.0.0.1"


def test_env_lists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PUREINFER_API_KEYS", "a, b,c")
    monkeypatch.setenv("PUREINFER_SIGNING_SECRET", "xyz")
    monkeypatch.setenv("PUREINFER_TEXT_MODELS", "qwen_instruct=/m/a,qwen_base=/m/b")
    s = WorkerSettings(cache_dir=tmp_path)
    assert s.api_keys == ["a", "b", "c"] and s.signing_secret == "xyz"
    assert s.text_model_specs(cuda=False) == [("qwen_instruct", "/m/a"), ("qwen_base", "/m/b")]


def test_default_models(tmp_path: Path) -> None:
    s = WorkerSettings(cache_dir=tmp_path)
    assert s.text_model_specs(cuda=True) == [("qwen_instruct", "Qwen/Qwen2.5-7B-Instruct")]
    assert s.text_model_specs(cuda=False) == [("qwen_instruct", "Qwen/Qwen2.5-0.5B-Instruct")]


def test_the_query_string_is_signed(signed_client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    h = sign(SECRET, "GET", "/v1/models", b"")
    assert "Invalid" in _unauthorized(signed_client.get("/v1/models?added=1", headers={**auth, **h}))
    h = sign(SECRET, "GET", "/v1/models?x=1", b"")
    assert "Invalid" in _unauthorized(signed_client.get("/v1/models?x=2", headers={**auth, **h}))
    assert signed_client.get("/v1/models?x=1", headers={**auth, **h}).status_code == 200


def test_a_full_replay_guard_refuses_with_503(cache_dir: Path) -> None:
    app = create_app(make_settings(cache_dir, api_keys=[API_KEY], signing_secret=SECRET))
    guard = app.build_middleware_stack()  # the verifier instance create_app gave the Guard (shared by every build)
    while not hasattr(guard, "verifier"):
        guard = guard.app
    guard.verifier._max_remembered = 1
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(app) as c:
        assert c.get("/v1/models", headers={**auth, **sign(SECRET, "GET", "/v1/models", b"")}).status_code == 200
        r = c.get("/v1/models", headers={**auth, **sign(SECRET, "GET", "/v1/models", b"")})
    assert r.status_code == 503 and r.json()["error_code"] == "WORKER_OVERLOADED"
    assert 1 <= int(r.headers["Retry-After"]) <= 300
