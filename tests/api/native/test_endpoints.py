"""The seed's text endpoints on the real tiny model: every field, seeds, raw prompts, models."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

from pureinfer.worker.app import create_app
from tests.support.worker import API_KEY, make_settings, msgs

SEED_FIELDS = {"success", "generation_time", "tokens_generated", "model_used", "pure_inference",
               "no_prompt_overrides"}
PROOF_FIELDS = {"prompt_tokens", "prompt_sha256", "finish_reason", "request_id", "execution_metadata"}


def test_chat_has_every_seed_field(client: TestClient, demo_text_dir: Path) -> None:
    r = client.post("/chat", json={"messages": msgs(), "max_tokens": 12, "temperature": 0.7, "top_p": 0.9})
    assert r.status_code == 200, r.text
    body = r.json()
    assert SEED_FIELDS | PROOF_FIELDS | {"response", "enhanced_prompt"} <= set(body)
    assert body["success"] is True and body["pure_inference"] is True and body["no_prompt_overrides"] is True
    assert body["model_used"] == "qwen_instruct"
    assert body["response"] == body["enhanced_prompt"]
    assert 1 <= body["tokens_generated"] <= 12
    assert body["finish_reason"] in ("stop", "length")
    assert body["execution_metadata"] == {"worker_type": "chat", "architecture": "pure_inference_engine"}
    assert body["request_id"] == r.headers["x-request-id"]
    # The proof: the prompt is exactly the tokenizer's own chat template over our messages.
    tok = AutoTokenizer.from_pretrained(demo_text_dir)
    rendered = tok.apply_chat_template(msgs(), tokenize=False, add_generation_prompt=True)
    assert body["prompt_sha256"] == hashlib.sha256(rendered.encode()).hexdigest()
    assert body["prompt_tokens"] == len(tok(rendered, add_special_tokens=False)["input_ids"])


def test_enhance_fields_and_default_max_tokens(client: TestClient) -> None:
    r = client.post("/enhance", json={"messages": msgs(), "min_tokens": 200, "temperature": 1.0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["template_respected"] is True
    assert "enhanced_prompt" in body and "response" not in body
    assert body["tokens_generated"] == 200  # the /enhance default max_tokens, reached with min_tokens
    assert body["finish_reason"] == "length"


def test_generate_with_messages_and_raw_prompt(client: TestClient) -> None:
    r = client.post("/generate", json={"messages": msgs("Write a story"), "max_tokens": 5})
    assert r.status_code == 200, r.text
    assert "response" in r.json() and "enhanced_prompt" not in r.json()
    raw = "Once upon a time"
    r = client.post("/generate", json={"prompt": raw, "max_tokens": 5})
    assert r.status_code == 200, r.text
    assert r.json()["prompt_sha256"] == hashlib.sha256(raw.encode()).hexdigest()


def test_generate_requires_exactly_one_input(client: TestClient) -> None:
    for body in ({"max_tokens": 5}, {"prompt": "x", "messages": msgs(), "max_tokens": 5}):
        r = client.post("/generate", json=body)
        assert r.status_code == 400
        assert r.json()["error_code"] == "INVALID_PAYLOAD"
        assert r.json()["details"]["fields"][0]["field"] in ("messages", "prompt")


def test_same_seed_same_output_across_requests(client: TestClient) -> None:
    body = {"messages": msgs(), "max_tokens": 16, "min_tokens": 16, "temperature": 1.0, "top_p": 0.95,
            "top_k": 50, "seed": 1234}
    a = client.post("/chat", json=body).json()
    b = client.post("/chat", json=body).json()
    c = client.post("/chat", json={**body, "seed": 4321}).json()
    assert a["response"] == b["response"]
    assert a["response"] != c["response"]


def test_greedy_is_deterministic_without_seed(client: TestClient) -> None:
    body = {"messages": msgs("castle"), "max_tokens": 10, "min_tokens": 10, "temperature": 0}
    assert client.post("/chat", json=body).json()["response"] == client.post("/chat", json=body).json()["response"]


def test_stop_string_ends_output(client: TestClient) -> None:
    base = {"messages": msgs(), "max_tokens": 40, "min_tokens": 0, "temperature": 0}
    full = client.post("/generate", json=base).json()["response"]
    if len(full) < 4:
        pytest.fail(f"the greedy output is too short to pick a stop string from: {full!r}")
    stop = full[2:4]
    r = client.post("/generate", json={**base, "stop": [stop]}).json()
    assert r["finish_reason"] == "stop"
    assert stop not in r["response"]
    assert full.startswith(r["response"])


def test_model_aliases(cache_dir: Path, demo_text_dir: Path) -> None:
    settings = make_settings(cache_dir, text_models=[f"qwen_instruct={demo_text_dir}", f"qwen_base={demo_text_dir}"])
    with TestClient(create_app(settings)) as c:
        r = c.post("/chat", json={"messages": msgs(), "max_tokens": 3, "model": "qwen_base"})
        assert r.status_code == 200 and r.json()["model_used"] == "qwen_base"
        assert c.post("/chat", json={"messages": msgs(), "max_tokens": 3}).json()["model_used"] == "qwen_instruct"
        r = c.post("/chat", json={"messages": msgs(), "max_tokens": 3, "model": "nope"})
        assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "model"
        models = c.get("/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["qwen_instruct", "qwen_base"]


def test_model_without_chat_template_refuses_messages(cache_dir: Path, demo_text_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    base = tmp_path / "base-model"
    shutil.copytree(demo_text_dir, base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((base / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (base / "tokenizer_config.json").write_text(json.dumps(cfg))
    with TestClient(create_app(make_settings(cache_dir, text_models=[f"qwen_base={base}"]))) as c:
        r = c.post("/generate", json={"messages": msgs(), "max_tokens": 3})
        assert r.status_code == 400
        assert r.json()["error_code"] == "INVALID_PAYLOAD"
        assert "chat template" in r.json()["error"]
        assert r.json()["details"]["fields"][0]["field"] == "messages"
        ok = c.post("/generate", json={"prompt": "The sky is", "max_tokens": 3})
        assert ok.status_code == 200 and ok.json()["model_used"] == "qwen_base"


def test_request_id_is_taken_from_the_caller(client: TestClient) -> None:
    r = client.post("/chat", json={"messages": msgs(), "max_tokens": 2}, headers={"X-Request-ID": "abc-123"})
    assert r.json()["request_id"] == "abc-123" and r.headers["x-request-id"] == "abc-123"


def test_api_key_header_variants(client: TestClient) -> None:
    r = client.post("/chat", json={"messages": msgs(), "max_tokens": 2},
                    headers={"Authorization": "", "X-API-Key": API_KEY})
    assert r.status_code == 200


def test_every_answer_reports_the_seed_that_reproduces_it(client: TestClient) -> None:
    body = {"messages": msgs(), "max_tokens": 12, "min_tokens": 12, "temperature": 1.0}
    for path in ("/chat", "/enhance", "/generate"):
        first = client.post(path, json=body).json()
        assert 0 <= first["seed"] < 2**32  # drawn at admission, reported
        again = client.post(path, json={**body, "seed": first["seed"]}).json()
        assert again["seed"] == first["seed"]
        key = "enhanced_prompt" if path == "/enhance" else "response"
        assert again[key] == first[key]
    assert client.post("/chat", json={**body, "seed": 2**40}).json()["seed"] == 2**40
    assert "seed" in client.post("/chat", json={**body, "temperature": 0}).json()  # greedy too
    oai = {"messages": msgs(), "max_tokens": 8}
    first = client.post("/v1/chat/completions", json=oai).json()
    again = client.post("/v1/chat/completions", json={**oai, "seed": first["seed"]}).json()
    assert again["seed"] == first["seed"]
    assert again["choices"][0]["message"]["content"] == first["choices"][0]["message"]["content"]
