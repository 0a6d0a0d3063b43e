"""Browser sessions (gateway/auth.py, /session): the admin key once for an HttpOnly,
SameSite=Strict cookie; the cookie then works wherever an admin or caller key does; a
state-changing request with the cookie needs the session's CSRF token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pureinfer.gateway.app import create_app
from pureinfer.gateway.auth import SessionStore
from tests.support.gateway import ADMIN_KEY, CALLER_KEY, gateway_settings, tpl


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = gateway_settings(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}")
    with TestClient(create_app(settings, start_background=False), base_url="http://127.0.0.1") as c:
        yield c


def sign_in(client: TestClient, key: str = ADMIN_KEY) -> str:
    r = client.post("/session", json={"admin_key": key})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


def test_sign_in_sets_an_httponly_strict_cookie_and_answers_the_csrf_token(client: TestClient) -> None:
    r = client.post("/session", json={"admin_key": ADMIN_KEY})
    cookie = r.headers["set-cookie"].lower()
    assert "pureinfer_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "path=/" in cookie and "secure" not in cookie  # plain http here
    body = r.json()
    assert len(body["csrf_token"]) >= 40 and body["key_id"] and r.headers["cache-control"] == "no-store"
    assert client.get("/session").json()["csrf_token"] == body["csrf_token"]


@pytest.mark.parametrize("key", ["wrong", CALLER_KEY])
def test_only_an_admin_key_signs_in(client: TestClient, key: str) -> None:
    r = client.post("/session", json={"admin_key": key})
    assert (r.status_code, r.json()["error_code"]) == (401, "UNAUTHORIZED")
    assert "set-cookie" not in r.headers
    assert client.get("/session").status_code == 401


def test_the_cookie_reads_without_and_writes_only_with_the_csrf_token(client: TestClient) -> None:
    assert client.get("/templates").status_code == 401
    csrf = sign_in(client)
    assert client.get("/templates").status_code == 200 and client.get("/audit").status_code == 200
    for headers in ({}, {"X-CSRF-Token": "not-the-token"}):
        r = client.post("/templates", json=tpl(), headers=headers)
        assert r.status_code == 403, r.text
        assert r.json()["error_code"] == "CSRF_TOKEN_INVALID" and r.json()["details"] == {"header": "X-CSRF-Token"}
    assert client.post("/templates", json=tpl(), headers={"X-CSRF-Token": csrf}).status_code == 201
    # a caller route takes the admin's session too (with the token: it is a POST)
    r = client.post("/chat", json={"message": "hi"})
    assert r.json()["error_code"] == "CSRF_TOKEN_INVALID"


def test_a_key_header_is_judged_by_the_key_alone(client: TestClient) -> None:
    sign_in(client)
    r = client.post("/templates", json=tpl(template_name="by_key"), headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 201  # no CSRF token needed: a header is no ambient credential
    r = client.get("/templates", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401  # a wrong key is not rescued by the cookie


def test_sign_out_needs_the_token_and_ends_the_session(client: TestClient) -> None:
    csrf = sign_in(client)
    assert client.delete("/session").status_code == 403
    assert client.delete("/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/session").status_code == 401
    assert client.get("/templates").status_code == 401


def test_sessions_expire_and_are_bounded() -> None:
    store = SessionStore(ttl_s=10, max_sessions=2)
    a, _ = store.create("k", now=100)
    assert store.get(a, now=109) is not None and store.get(a, now=110) is None
    b, _ = store.create("k", now=200)
    c, _ = store.create("k", now=200)
    d, _ = store.create("k", now=200)
    assert store.get(b, now=201) is None and store.get(c, now=201) and store.get(d, now=201)
    assert store.get(None) is None and store.get("") is None
