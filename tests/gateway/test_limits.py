"""The gateway's request-body limit (413 before anything is parsed, the worker's guard) and the
bounds of a chat request."""

from __future__ import annotations

import json

import pytest

from tests.support.gateway import ADMIN, CALLER, tpl

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_bodies_over_the_limit_are_refused_unread(sqlite_url, make_gateway):
    app, c = await make_gateway(sqlite_url, background=False, max_body_bytes=10_000)
    big = {"message": "x", "history": [{"role": "user", "content": "y" * 5_000}] * 3}
    r = await c.post("/chat", json=big, headers={**CALLER, "X-Request-ID": "big-1"})
    assert r.status_code == 413 and r.json()["error_code"] == "INVALID_PAYLOAD"
    assert r.json()["details"]["fields"] == [{"field": "body", "message": "larger than 10000 bytes"}]
    assert r.json()["request_id"] == "big-1" and r.headers["x-request-id"] == "big-1"

    # No Content-Length (chunked): refused as soon as the body grows past the limit.
    read = 0

    async def chunks():
        nonlocal read
        for _ in range(100):
            read += 1
            yield b" " * 4096
    r = await c.post("/templates", content=chunks(), headers={**ADMIN, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["details"]["max_bytes"] == 10_000
    # Admin endpoints and registration are under the same limit.
    r = await c.post("/templates", json=tpl(system_prompt="p" * 20_000), headers=ADMIN)
    assert r.status_code == 413 and r.json()["error_code"] == "INVALID_PAYLOAD"
    r = await c.post("/workers/register", content=b"{" + b" " * 20_000 + b"}")
    assert r.status_code == 413 and r.json()["error_code"] == "INVALID_PAYLOAD"


async def test_default_limit_and_chat_bounds(sqlite_url, make_gateway):
    app, c = await make_gateway(sqlite_url, background=False)
    assert app.state.gateway.settings.max_body_bytes == 1_048_576
    # 500 history items of 100k characters: refused before parsing (it used to be read and accepted).
    huge = json.dumps({"message": "x", "history": [{"role": "user", "content": "y" * 100_000}] * 500})
    r = await c.post("/chat", content=huge, headers={**CALLER, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error_code"] == "INVALID_PAYLOAD"
    # Under the body limit, the chat bounds name the field.
    r = await c.post("/chat", json={"message": "x", "history": [{"role": "user", "content": "y"}] * 101},
                     headers=CALLER)
    assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "history"
    r = await c.post("/chat", json={"message": "m" * 32_001,
                                    "history": [{"role": "assistant", "content": "a" * 32_001}]}, headers=CALLER)
    assert r.status_code == 400
    assert {f["field"] for f in r.json()["details"]["fields"]} == {"message", "history.0.content"}
