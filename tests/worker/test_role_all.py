"""Role `all`: one process serves text and images; `POST /generate` picks by the documented rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from pureinfer.worker.app import create_app
from tests.support.worker import make_settings


@pytest.fixture(scope="module")
def all_client(cache_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(cache_dir, role="all"))) as c:
        yield c


def test_text_and_image_on_one_path(all_client: TestClient) -> None:
    text = all_client.post("/generate", json={"prompt": "a cat", "max_tokens": 4, "min_tokens": 4})
    assert text.status_code == 200, text.text
    assert text.json()["tokens_generated"] == 4 and "response" in text.json()
    msgs = all_client.post("/generate", json={"messages": [{"role": "user", "content": "hi"}]})
    assert msgs.status_code == 200 and "response" in msgs.json()
    image = all_client.post("/generate", json={"prompt": "a cat", "width": 64, "height": 64, "steps": 2, "seed": 5})
    assert image.status_code == 200, image.text
    body = image.json()
    assert body["metadata"]["seed"] == 5 and body["image_url"]
    served = all_client.get(httpx.URL(body["image_url"]).path)
    assert served.status_code == 200 and served.content.startswith(b"\x89PNG")
    # Each answer names the worker type that actually served it, not the role `all`.
    assert text.json()["execution_metadata"]["worker_type"] == "chat"
    assert body["execution_metadata"]["worker_type"] == "image"
    assert body["execution_metadata"]["architecture"] == "pure_inference_engine"


def test_image_progress_streams_on_the_shared_path(all_client: TestClient) -> None:
    r = all_client.post("/generate", json={"prompt": "a cat", "width": 64, "height": 64, "steps": 3, "seed": 5,
                                           "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    events = [json.loads(d) for d in data[:-1]]
    assert [e["progress"]["step"] for e in events[:-1]] == [1, 2, 3]
    assert events[-1]["execution_metadata"]["worker_type"] == "image" and events[-1]["images"][0]["seed"] == 5
    text = all_client.post("/generate", json={"prompt": "a cat", "max_tokens": 3, "min_tokens": 3, "stream": True})
    assert text.status_code == 200 and '"text"' in text.text and '"progress"' not in text.text


@pytest.mark.parametrize(("payload", "fields"), [
    ({"prompt": "a cat"}, ["body"]),
    ({"prompt": "a cat", "seed": 3}, ["body"]),
    ({"prompt": "a cat", "max_tokens": 5, "width": 64}, ["max_tokens", "width"]),
    ({"messages": [{"role": "user", "content": "x"}], "steps": 3}, ["messages", "steps"]),
])
def test_ambiguous_bodies(all_client: TestClient, payload: dict, fields: list[str]) -> None:
    r = all_client.post("/generate", json=payload)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD"
    assert "Ambiguous" in r.json()["error"]
    assert [f["field"] for f in r.json()["details"]["fields"]] == fields


def test_validation_after_dispatch_names_fields(all_client: TestClient) -> None:
    r = all_client.post("/generate", json={"prompt": "a cat", "width": 65, "height": 64, "steps": 2})
    assert r.status_code == 400 and "width" in [f["field"] for f in r.json()["details"]["fields"]]
    r = all_client.post("/generate", json={"prompt": "a cat", "max_tokens": 0})
    assert r.status_code == 400 and [f["field"] for f in r.json()["details"]["fields"]] == ["max_tokens"]
    r = all_client.post("/generate", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "body"


def test_info_covers_both_roles(all_client: TestClient) -> None:
    info = all_client.get("/worker/info").json()["worker_info"]
    assert info["worker_type"] == "all"
    assert {"/generate", "/chat", "/v1/images/generations", "/v1/chat/completions"} <= set(info["endpoints"])
    assert "image_generation" in info["capabilities"] and info["image"]["max_prompt_tokens"] == 77
    status = all_client.get("/status").json()
    assert "image" in status["performance"] and len(status["capabilities"]["models"]) == 2
