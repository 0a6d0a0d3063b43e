"""POST /enhance-prompt speaks the seed's edge-function contract (WORKER_API.md, "Enhanced
Logging"): the camelCase request, the worker-response shape at the top level plus ours, the four
log events with the seed's field names, and an audit row that makes the interaction checkable and
reproducible."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time

import pytest

from pureinfer.logging import JsonFormatter
from tests.support.gateway import ADMIN, CALLER, tpl

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def setup(make_gateway, url, fake_workers, **settings):
    app, c = await make_gateway(url, background=False, **settings)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    await c.post("/templates", json=tpl(template_name="video_base", target_model="wan", job_type="video",
                                        enhancer_model="qwen_base", system_prompt="You write video prompts."),
                 headers=ADMIN)
    ctl, srv = fake_workers("w")
    wid = (await c.post("/workers", json={"url": srv.url, "models": ["qwen_instruct", "qwen_base"]},
                        headers=ADMIN)).json()["id"]
    return app, c, ctl, wid


async def audit_row(c, request_id: str) -> dict:
    deadline = time.monotonic() + 60  # a bound on waiting, not a speed goal
    while True:
        rows = (await c.get(f"/audit?request_id={request_id}", headers=ADMIN)).json()["records"]
        if rows or time.monotonic() > deadline:
            assert rows, f"no audit row for {request_id}"
            return rows[0]
        await asyncio.sleep(0.05)


async def test_the_seeds_request_and_response(database_url, make_gateway, fake_workers):
    app, c, ctl, wid = await setup(make_gateway, database_url, fake_workers)
    seed_request = {"prompt": "a dragon over a lake", "jobType": "video", "format": "mp4", "quality": "high",
                    "selectedModel": "qwen_base", "target_model": "wan"}
    r = await c.post("/enhance-prompt", json=seed_request, headers={**CALLER, "X-Request-ID": "seed-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    # The seed's worker-response shape, at the top level...
    assert {"success", "enhanced_prompt", "generation_time", "tokens_generated", "model_used", "pure_inference",
            "no_prompt_overrides", "template_respected", "execution_metadata"} <= set(body)
    assert (body["success"], body["pure_inference"], body["no_prompt_overrides"], body["template_respected"]) == \
        (True, True, True, True)
    assert body["enhanced_prompt"] == "[w] enhanced: a dragon over a lake"
    assert (body["generation_time"], body["tokens_generated"], body["model_used"]) == (0.01, 5, "qwen_base")
    md = body["execution_metadata"]
    assert (md["worker_type"], md["architecture"], md["template_name"], md["fallback_level"], md["cache_hit"]) == \
        ("chat", "pure_inference_engine", "video_base", 0, False)
    # ...plus ours.
    assert (body["original_prompt"], body["request_id"]) == ("a dragon over a lake", "seed-1")
    assert body["strategy"] == "template video_base v1, fallback level 0 (exact match)"
    assert (md["template_version"], md["worker_id"], md["prompt_sha256"], md["attempts"], md["seed"]) == \
        (1, wid, "0" * 64, 1, 4242)
    # The worker got the template selected by jobType + selectedModel, and the caller's prompt.
    sent = ctl.calls[-1]["payload"]
    assert sent["messages"] == [{"role": "system", "content": "You write video prompts."},
                                {"role": "user", "content": "a dragon over a lake"}]
    assert sent["model"] == "qwen_base" and sent["max_tokens"] == 75

    # The audit row: model, sampling with the seed used, both hashes, the response hash, attempts.
    row = await audit_row(c, "seed-1")
    assert (row["model_used"], row["attempts"], row["prompt_sha256"]) == ("qwen_base", 1, "0" * 64)
    assert row["sampling"] == {"max_tokens": 75, "seed": 4242}  # the seed the worker reports it used
    assert row["response_sha256"] == hashlib.sha256(body["enhanced_prompt"].encode()).hexdigest()
    assert row["messages_sha256"] == hashlib.sha256(
        json.dumps(sent["messages"], separators=(",", ":")).encode()).hexdigest()
    assert row["strategy"] == body["strategy"] and row["prompt_preview"] == "a dragon over a lake"
    assert row["messages"] is None and row["response_text"] is None  # previews only by default

    # A seed and sampling asked for are sent and audited; the worker's report of the seed wins.
    r = await c.post("/enhance-prompt", json={"prompt": "x", "seed": 7, "temperature": 0.2, "top_p": 0.5},
                     headers={**CALLER, "X-Request-ID": "seed-2"})
    assert r.json()["execution_metadata"]["seed"] == 7 and ctl.calls[-1]["payload"]["seed"] == 7
    assert (await audit_row(c, "seed-2"))["sampling"] == {"max_tokens": 75, "seed": 7, "temperature": 0.2,
                                                          "top_p": 0.5}


async def test_either_name_never_both_and_nothing_unknown(sqlite_url, make_gateway, fake_workers):
    app, c, ctl, wid = await setup(make_gateway, sqlite_url, fake_workers)
    ok = await c.post("/enhance-prompt", json={"prompt": "p", "job_type": "video", "enhancer_model": "qwen_base",
                                               "target_model": "wan"}, headers=CALLER)
    assert ok.status_code == 200 and ok.json()["execution_metadata"]["template_name"] == "video_base"
    for body, field in (({"prompt": "p", "jobType": "video", "job_type": "video"}, "jobType"),
                        ({"prompt": "p", "selectedModel": "a", "enhancer_model": "a"}, "selectedModel"),
                        ({"prompt": "p", "promptLength": 1}, "promptLength"),
                        ({"prompt": "p", "jobType": ""}, "jobType")):
        r = await c.post("/enhance-prompt", json=body, headers=CALLER)
        assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD", r.text
        assert field in r.json()["error"], r.text


async def test_the_four_log_events_carry_the_seeds_names(sqlite_url, make_gateway, fake_workers, caplog):
    app, c, ctl, wid = await setup(make_gateway, sqlite_url, fake_workers)
    prompt = "a quiet harbour at dawn, " * 12  # 300 characters
    with caplog.at_level(logging.INFO, logger="pureinfer.gateway"):
        r = await c.post("/enhance-prompt", json={"prompt": prompt, "jobType": "image", "format": "png",
                                                  "quality": "high", "selectedModel": "qwen_instruct"},
                         headers=CALLER)
    assert r.status_code == 200
    lines = {}
    for rec in caplog.records:
        line = json.loads(JsonFormatter().format(rec))
        lines.setdefault(line.get("event"), line)
    req, sel, pay, res = (lines[e] for e in ("enhance_request", "template_selected", "worker_payload",
                                             "enhance_result"))
    assert (req["prompt"], req["promptLength"]) == (prompt[:100] + "...", 300)  # cut as the seed cuts
    assert (req["jobType"], req["format"], req["quality"], req["selectedModel"]) == ("image", "png", "high",
                                                                                     "qwen_instruct")
    assert (sel["template"], sel["enhancerModel"], sel["modelType"], sel["selectedModel"], sel["workerType"],
            sel["contentMode"]) == ("sdxl_instruct_sfw", "qwen_instruct", "sdxl", "qwen_instruct", "chat", "sfw")
    assert (pay["messagesCount"], pay["systemPromptLength"], pay["userPromptLength"], pay["maxTokens"],
            pay["templateName"]) == (2, len("You write SDXL prompts."), 300, 75, "sdxl_instruct_sfw")
    assert res["originalPrompt"] == prompt[:200] + "..." and res["templateUsed"] == "sdxl_instruct_sfw"
    assert res["strategy"] == r.json()["strategy"] and res["enhancedPrompt"].startswith("[w] enhanced:")
    assert all(line["request_id"] == r.json()["request_id"] for line in (req, sel, pay, res))


async def test_no_template_says_why_in_the_audit_and_log(sqlite_url, make_gateway, fake_workers, caplog):
    app, c, ctl, wid = await setup(make_gateway, sqlite_url, fake_workers)
    with caplog.at_level(logging.INFO, logger="pureinfer.gateway"):
        r = await c.post("/enhance-prompt", json={"prompt": "p", "target_model": "flux"},
                         headers={**CALLER, "X-Request-ID": "none-1"})
    assert r.status_code == 404 and r.json()["error_code"] == "TEMPLATE_NOT_FOUND"
    failed = next(rec for rec in caplog.records if getattr(rec, "event", None) == "enhance-prompt_failed")
    assert failed.strategy == "none: no active template on any fallback level"
    assert (await audit_row(c, "none-1"))["strategy"] == failed.strategy


async def test_full_audit_keeps_the_messages_and_the_response(sqlite_url, make_gateway, fake_workers):
    app, c, ctl, wid = await setup(make_gateway, sqlite_url, fake_workers, audit_prompts="full",
                                   audit_preview_chars=10)
    long_prompt = "p" * 500
    r = await c.post("/enhance-prompt", json={"prompt": long_prompt}, headers={**CALLER, "X-Request-ID": "full-1"})
    assert r.status_code == 200
    row = await audit_row(c, "full-1")
    assert row["messages"] == ctl.calls[-1]["payload"]["messages"] and row["response_text"] == r.json()["enhanced_prompt"]
    assert row["prompt_preview"] == "p" * 10 + "..."  # previews stay previews


async def test_chat_rows_are_as_complete(sqlite_url, make_gateway, fake_workers):
    app, c = await make_gateway(sqlite_url, background=False)
    await c.post("/templates", json=tpl(template_name="chat", target_model="chat", job_type="chat", use_case="chat",
                                        token_limit=300), headers=ADMIN)
    ctl, srv = fake_workers("w")
    await c.post("/workers", json={"url": srv.url}, headers=ADMIN)
    r = await c.post("/chat", json={"message": "hi", "seed": 11}, headers={**CALLER, "X-Request-ID": "chat-json"})
    assert r.status_code == 200 and r.json()["strategy"].startswith("template chat v1")
    async with c.stream("POST", "/chat", json={"message": "hey", "stream": True},
                        headers={**CALLER, "X-Request-ID": "chat-sse"}) as s:
        text = (await s.aread()).decode()
    assert text.rstrip().endswith("data: [DONE]")
    plain, streamed = await audit_row(c, "chat-json"), await audit_row(c, "chat-sse")
    assert (plain["sampling"], plain["attempts"], plain["model_used"]) == ({"max_tokens": 300, "seed": 11}, 1,
                                                                          "qwen_instruct")
    assert plain["response_sha256"] == hashlib.sha256(b"[w] enhanced: hi").hexdigest()
    # Streamed: what the final event reported (seed drawn by the worker, its prompt hash).
    assert (streamed["sampling"], streamed["prompt_sha256"], streamed["attempts"]) == \
        ({"max_tokens": 300, "seed": 4242}, "1" * 64, 1)
    assert streamed["response_sha256"] == hashlib.sha256(b"[w] enhanced: hey ").hexdigest()


async def test_a_role_all_worker_reports_the_type_that_served(sqlite_url, make_gateway, fake_workers):
    """Registered as `all`, the worker answers text as `chat`: the response and the audit row say
    `chat`, the type that served the request, not the role."""
    app, c = await make_gateway(sqlite_url, background=False)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    ctl, srv = fake_workers("w")
    r = await c.post("/workers", json={"url": srv.url, "worker_type": "all"}, headers=ADMIN)
    assert r.json()["worker_type"] == "all"
    r = await c.post("/enhance-prompt", json={"prompt": "a cat"}, headers={**CALLER, "X-Request-ID": "all-1"})
    assert r.status_code == 200 and r.json()["execution_metadata"]["worker_type"] == "chat"
    assert (await audit_row(c, "all-1"))["worker_type"] == "chat"
