"""Every bad input gets a coded error naming the field, the right status, and no stack trace."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pureinfer.worker.app import create_app
from tests.support.worker import make_settings, msgs


def _assert_envelope(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"success", "error", "details", "error_code", "suggested_action", "request_id"}
    assert body["success"] is False and body["error_code"] == code
    assert body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text
    return body


def _fields(body: dict) -> list[str]:
    return [f["field"] for f in body["details"]["fields"]]


@pytest.mark.parametrize(("payload", "field"), [
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": []}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [{"role": "user"}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    ({"messages": msgs(), "temperature": 2.5}, "temperature"),
    ({"messages": msgs(), "temperature": -0.1}, "temperature"),
    ({"messages": msgs(), "temperature": "hot"}, "temperature"),
    ({"messages": msgs(), "top_p": 0}, "top_p"),
    ({"messages": msgs(), "top_p": 1.5}, "top_p"),
    ({"messages": msgs(), "max_tokens": 0}, "max_tokens"),
    ({"messages": msgs(), "max_tokens": "ten"}, "max_tokens"),
    ({"messages": msgs(), "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"messages": msgs(), "top_k": -1}, "top_k"),
    ({"messages": msgs(), "seed": -5}, "seed"),
    ({"messages": msgs(), "unknown_field": 1}, "unknown_field"),
    ({"messages": msgs(), "max_tokens": 5, "min_tokens": 6}, "min_tokens"),
    ({}, "messages"),
])
def test_bad_fields_are_named(client: TestClient, payload: dict, field: str) -> None:
    body = _assert_envelope(client.post("/chat", json=payload), 400, "INVALID_PAYLOAD")
    assert field in _fields(body), body


def test_malformed_json(client: TestClient) -> None:
    r = client.post("/chat", content=b'{"messages": [', headers={"Content-Type": "application/json"})
    body = _assert_envelope(r, 400, "INVALID_PAYLOAD")
    assert _fields(body) == ["body"] and "malformed JSON" in body["error"]


def test_body_not_an_object(client: TestClient) -> None:
    _assert_envelope(client.post("/chat", json=[1, 2, 3]), 400, "INVALID_PAYLOAD")


def test_body_too_large_is_413(cache_dir: Path) -> None:
    with TestClient(create_app(make_settings(cache_dir, max_body_bytes=2048))) as c:
        big = {"messages": [{"role": "user", "content": "x" * 5000}]}
        body = _assert_envelope(c.post("/chat", json=big), 413, "INVALID_PAYLOAD")
        assert body["details"]["max_bytes"] == 2048 and _fields(body) == ["body"]
        # A chunked body without Content-Length is cut off the same way.
        def chunks():
            for _ in range(10):
                yield b"x" * 1000
        r = c.post("/chat", content=chunks(), headers={"Content-Type": "application/json"})
        _assert_envelope(r, 413, "INVALID_PAYLOAD")


def test_max_tokens_above_configured_maximum(client: TestClient) -> None:
    body = _assert_envelope(client.post("/chat", json={"messages": msgs(), "max_tokens": 2001}),
                            400, "TOKEN_LIMIT_EXCEEDED")
    d = body["details"]
    assert d["max_tokens"] == 2001 and d["max_tokens_limit"] == 2000 and d["n_ctx"] == 2048
    assert d["n_prompt_tokens"] > 0


def test_prompt_plus_max_tokens_above_context(client: TestClient) -> None:
    long_text = "sunset " * 600
    body = _assert_envelope(client.post("/chat", json={"messages": msgs(long_text), "max_tokens": 1900}),
                            400, "TOKEN_LIMIT_EXCEEDED")
    d = body["details"]
    assert d["n_prompt_tokens"] + d["max_tokens"] > d["n_ctx"] == 2048
    # The same prompt with room left runs: nothing is truncated, it is either run or refused.
    ok = client.post("/chat", json={"messages": msgs(long_text), "max_tokens": 2})
    assert ok.status_code == 200 and ok.json()["prompt_tokens"] == d["n_prompt_tokens"]


def test_unknown_route_and_method(client: TestClient) -> None:
    _assert_envelope(client.get("/nope"), 404, "NOT_FOUND")
    body = _assert_envelope(client.get("/chat"), 405, "INVALID_PAYLOAD")
    assert _fields(body) == ["method"]


def test_validation_does_not_echo_prompts(client: TestClient) -> None:
    secret = "my-secret-prompt-text"
    r = client.post("/chat", json={"messages": [{"role": "wizard", "content": secret}]})
    assert r.status_code == 400 and secret not in r.text
    assert r.json()["error_code"] == "INVALID_PAYLOAD" and _fields(r.json()) == ["messages.0.role"]


def test_defaults_come_from_one_table_per_surface() -> None:
    from pureinfer.api.native.protocol import DEFAULTS, ChatRequest, GenerateRequest
    from pureinfer.api.openai.protocol import ChatCompletionRequest

    p = ChatRequest(messages=msgs()).sampling_params(DEFAULTS["enhance"], seed=5)
    assert (p.max_tokens, p.temperature, p.top_p, p.top_k, p.min_tokens, p.repetition_penalty, p.stop, p.seed) == (
        200, 0.7, 0.9, 0, 0, 1.0, (), 5)
    assert GenerateRequest(prompt="x").sampling_params(DEFAULTS["generate"], seed=1).max_tokens == 512
    o = ChatCompletionRequest(messages=msgs(), max_tokens=9, max_completion_tokens=7, temperature=0.2, stop="\n")
    p = o.sampling_params(DEFAULTS["openai"], seed=3)
    assert (p.max_tokens, p.temperature, p.top_p, p.stop) == (7, 0.2, 1.0, ("\n",))  # OpenAI's own top_p
    fields = ChatRequest.model_json_schema()["properties"]
    assert "200 (/enhance)" in fields["max_tokens"]["description"]  # the documented defaults are the table's
