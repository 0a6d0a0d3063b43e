"""Every route of `pureinfer gateway` (after `pureinfer templates import --starter`), called once
as a real process in front of a real `pureinfer worker --demo --role all` that registered itself:
2xx and a body of the documented shape, the routes taken from the gateway's own OpenAPI document
(a new route without a call here fails), every call in the audit trail, and a log without
tracebacks."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import httpx

from tests.smoke.conftest import ADMIN_KEY, CALLER_KEY, REGISTRATION_SECRET, Product
from tests.support.product import SmokeClient, sse_data

SHA256 = re.compile(r"[0-9a-f]{64}")
STARTER = {"sdxl_enhance_instruct_sfw", "sdxl_enhance_base_sfw", "wan_enhance_instruct_sfw", "playground_chat_sfw"}
SMOKE_TEMPLATE = {
    "template_name": "smoke_story_sfw", "enhancer_model": "qwen_instruct", "target_model": "story",
    "job_type": "text", "use_case": "enhancement", "content_mode": "sfw",
    "system_prompt": "You write one-line story ideas.", "token_limit": 16,
}


def family(name: str, *, versions: int, served: int | None, labels: dict[str, int] | None = None):
    """A template family as the admin API returns it."""
    def check(r: httpx.Response) -> None:
        body = r.json()
        assert body["template_name"] == name and len(body["versions"]) == versions
        assert body["served_version"] == served
        if labels is not None:
            assert body["labels"] == labels
    return check


def test_every_gateway_endpoint(product: Product) -> None:
    with SmokeClient("gateway", product.gateway_url, key=ADMIN_KEY) as g:
        g.load_routes()
        g.call("GET", "/health", auth=False, check=lambda r: _assert(r.json()["status"] == "healthy"
                                                                     and r.json()["healthy_workers"] >= 1))
        # `pureinfer gateway` serves the console as `serve` does (pages, not in the OpenAPI document)
        page = httpx.get(f"{product.gateway_url}/ui/login", timeout=30)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]

        # -- workers: the one that registered itself, the signed routes it uses, the admin routes ------
        listed = g.call("GET", "/workers", check=lambda r: _assert(
            [(w["url"], w["source"], w["healthy"]) for w in r.json()] == [(product.worker_url, "registered", True)]))
        worker_id = listed.json()[0]["id"] if listed is not None else "unknown"
        registration = {"url": product.worker_url, "worker_type": "all", "models": ["qwen_instruct"]}
        g.call("POST", "/workers/register", registration, key=None, secret=REGISTRATION_SECRET,
               check=lambda r: _assert(r.json()["worker_id"] == worker_id and r.json()["heartbeat_s"] > 0))
        g.call("POST", f"/workers/{worker_id}/heartbeat", key=None, secret=REGISTRATION_SECRET, expect=204)
        # a second entry for the same worker, by another name, added and removed by an admin
        alias = product.worker_url.replace("127.0.0.1", "localhost")
        added = g.call("POST", "/workers", {"url": alias, "worker_type": "all", "models": ["qwen_instruct"]},
                       expect=201, check=lambda r: _assert(
                           (r.json()["url"], r.json()["source"], r.json()["healthy"]) == (alias, "admin", True)))
        if added is not None:
            g.call("DELETE", f"/workers/{added.json()['id']}", expect=204)

        # -- templates: the starter set, and one family through its whole admin life ----------------
        g.call("GET", "/templates", check=lambda r: _assert({t["template_name"] for t in r.json()} >= STARTER))
        name = SMOKE_TEMPLATE["template_name"]
        g.call("POST", "/templates", SMOKE_TEMPLATE, expect=201, check=family(name, versions=1, served=1))
        g.call("GET", f"/templates/{name}", check=family(name, versions=1, served=1))
        g.call("PUT", f"/templates/{name}", {"system_prompt": "You write two-line story ideas."},
               check=family(name, versions=2, served=2))
        g.call("POST", f"/templates/{name}/labels", {"label": "production", "version": 1},
               check=family(name, versions=2, served=1, labels={"latest": 2, "production": 1}))
        g.call("DELETE", f"/templates/{name}", check=lambda r: _assert(
            r.json()["served_version"] is None and not any(v["is_active"] for v in r.json()["versions"])))

        # YAML out and back in: the export (each family's latest version) imports as "unchanged"
        exported = g.call("GET", "/templates:export", check=lambda r: _assert(
            r.headers["content-type"].startswith("application/yaml") and f"template_name: {name}" in r.text))
        if exported is not None:
            g.call("POST", "/templates:import", {"yaml": exported.text}, check=lambda r: _assert(
                r.json()["created"] == r.json()["new_versions"] == 0 and r.json()["unchanged"] >= 5, r.text))

        # -- a browser session: the admin key once, then the cookie (and the CSRF token to change state)
        signed = g.call("POST", "/session", {"admin_key": ADMIN_KEY}, auth=False, check=lambda r: _assert(
            "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()))
        csrf = signed.json()["csrf_token"] if signed is not None else ""
        g.call("GET", "/session", auth=False, check=lambda r: _assert(r.json()["csrf_token"] == csrf))
        g.call("DELETE", "/session", auth=False, expect=403)  # no CSRF token: refused
        g.call("DELETE", "/session", auth=False, headers={"X-CSRF-Token": csrf}, expect=204)
        g.call("GET", "/session", auth=False, expect=401)
        g.http.cookies.clear()

        # -- the public endpoints, as a caller (each call's request id is ours, to find it in the audit)
        request_ids = [f"smoke-{uuid.uuid4().hex}" for _ in range(6)]
        prompt = "a fox in the snow"

        def enhanced(r: httpx.Response) -> None:
            body = r.json()
            assert body["success"] is True and body["original_prompt"] == prompt
            assert isinstance(body["enhanced_prompt"], str)
            meta = body["execution_metadata"]
            assert (meta["template_name"], meta["worker_id"], meta["model_used"]) == \
                ("sdxl_enhance_instruct_sfw", worker_id, "qwen_instruct")
            assert meta["worker_type"] == "chat"  # the role-`all` worker answered text as its chat side
            assert SHA256.fullmatch(meta["prompt_sha256"]) and meta["prompt_tokens"] > 0
            assert body["request_id"] == request_ids[0]
        g.call("POST", "/enhance-prompt", {"prompt": prompt}, key=CALLER_KEY, check=enhanced,
               request_id=request_ids[0])

        def chat(r: httpx.Response) -> None:
            body = r.json()
            assert body["success"] is True and isinstance(body["response"], str)
            assert SHA256.fullmatch(body["prompt_sha256"]) and body["tokens_generated"] >= 1
            assert body["execution_metadata"]["template_name"] == "playground_chat_sfw"
            assert body["request_id"] == request_ids[1]
        g.call("POST", "/chat", {"message": "hi", "max_tokens": 4}, key=CALLER_KEY, check=chat,
               request_id=request_ids[1])

        def chat_stream(r: httpx.Response) -> None:
            assert r.headers["content-type"].startswith("text/event-stream")
            assert (r.headers["x-template-name"], r.headers["x-worker-id"]) == ("playground_chat_sfw", worker_id)
            events = sse_data(r.text)
            assert events[-1] == "[DONE]", events[-3:]
            assert SHA256.fullmatch(json.loads(events[-2])["prompt_sha256"])
        g.call("POST", "/chat", {"message": "hi", "max_tokens": 4, "stream": True}, key=CALLER_KEY, check=chat_stream,
               request_id=request_ids[2])

        # -- images, on the same worker (role all): plain, enhanced first, and OpenAI's shape ---------
        image = {"prompt": prompt, "width": 64, "height": 64, "steps": 2, "seed": 7}

        def image_response(rid: str, enhanced: bool):
            def check(r: httpx.Response) -> None:
                body = r.json()
                assert body["success"] is True and body["request_id"] == rid
                assert [i["seed"] for i in body["images"]] == [7] and body["image_url"].startswith(product.worker_url)
                meta = body["execution_metadata"]
                assert (meta["worker_type"], meta["worker_id"], meta["architecture"]) == (
                    "image", worker_id, "pure_inference_engine")
                assert body["original_prompt"] == prompt
                if enhanced:
                    enh = body["enhancement"]
                    assert enh["template_name"] == "sdxl_enhance_instruct_sfw"
                    assert body["prompt_used"] == enh["enhanced_prompt"] == body["metadata"]["prompt"]
                else:
                    assert body["enhancement"] is None and body["prompt_used"] == prompt
            return check
        made = g.call("POST", "/generate-image", image, key=CALLER_KEY, check=image_response(request_ids[3], False),
                      request_id=request_ids[3])
        if made is not None:  # the worker serves the file it stored
            png = httpx.get(made.json()["image_url"], timeout=30, trust_env=False)
            assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
        g.call("POST", "/generate-image", image | {"enhance": True}, key=CALLER_KEY,
               check=image_response(request_ids[4], True), request_id=request_ids[4])
        g.call("POST", "/v1/images/generations", {"prompt": prompt, "size": "64x64", "steps": 1, "n": 2},
               key=CALLER_KEY, request_id=request_ids[5], check=lambda r: _assert(
                   len(r.json()["data"]) == 2 and all(d["url"].endswith(".png") for d in r.json()["data"])))

        # -- Ollama's API: the same chat path, in Ollama's shapes (NDJSON streams by default) ------------
        ollama_ids = [f"smoke-{uuid.uuid4().hex}" for _ in range(3)]
        request_ids += ollama_ids
        turns = [{"role": "user", "content": "hi"}]

        def ollama_done(r: httpx.Response) -> None:
            body = r.json()
            assert body["done"] is True and body["template_name"] == "playground_chat_sfw"
            assert SHA256.fullmatch(body["prompt_sha256"]) and body["eval_count"] >= 1
            assert body["worker_id"] == worker_id and isinstance(body.get("message", body.get("response")), dict | str)
        g.call("POST", "/api/chat", {"model": "qwen_instruct", "messages": turns, "stream": False,
                                     "options": {"num_predict": 4}}, key=CALLER_KEY, check=ollama_done,
               request_id=ollama_ids[0])

        def ollama_stream(r: httpx.Response) -> None:
            assert r.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in r.text.splitlines() if line]
            assert lines[-1]["done"] is True and SHA256.fullmatch(lines[-1]["prompt_sha256"])
        g.call("POST", "/api/chat", {"model": "qwen_instruct", "messages": turns, "options": {"num_predict": 4}},
               key=CALLER_KEY, check=ollama_stream, request_id=ollama_ids[1])
        g.call("POST", "/api/generate", {"model": "qwen_instruct", "prompt": "hi", "stream": False,
                                         "options": {"num_predict": 4}}, key=CALLER_KEY, check=ollama_done,
               request_id=ollama_ids[2])
        g.call("GET", "/api/tags", key=CALLER_KEY,
               check=lambda r: _assert([m["name"] for m in r.json()["models"]] == ["qwen_instruct"]))
        g.call("POST", "/api/show", {"model": "qwen_instruct"}, key=CALLER_KEY,
               check=lambda r: _assert(r.json()["details"]["family"] == "qwen_instruct"))
        g.call("GET", "/api/version", key=CALLER_KEY, check=lambda r: _assert(r.json() == {"version": "0.1.0"}))

        # -- A1111's API: the same image path, in A1111's shapes ----------------------------------------
        a1111_id = f"smoke-{uuid.uuid4().hex}"
        request_ids.append(a1111_id)

        def txt2img(r: httpx.Response) -> None:
            body = r.json()
            info = json.loads(body["info"])
            assert info["all_seeds"] == [7, 8] and len(body["images"]) == 2 and info["worker_id"] == worker_id
            assert "Seed: 8" in info["infotexts"][1] and body["parameters"]["sampler_name"] == "Euler a"
        g.call("POST", "/sdapi/v1/txt2img", {"prompt": prompt, "width": 64, "height": 64, "steps": 2, "seed": 7,
                                             "batch_size": 2, "sampler_name": "Euler a"}, key=CALLER_KEY,
               check=txt2img, request_id=a1111_id)
        g.call("GET", "/sdapi/v1/sd-models", key=CALLER_KEY, check=lambda r: _assert(isinstance(r.json(), list)))
        g.call("GET", "/sdapi/v1/samplers", key=CALLER_KEY,
               check=lambda r: _assert("Euler a" in {s["name"] for s in r.json()}))
        g.call("GET", "/sdapi/v1/progress", key=CALLER_KEY,
               check=lambda r: _assert(r.json()["state"]["job_count"] == 0))
        g.call("GET", "/sdapi/v1/options", key=CALLER_KEY,
               check=lambda r: _assert(r.json()["samples_format"] == "png"))
        g.call("POST", "/sdapi/v1/options", {"samples_format": "png"}, key=CALLER_KEY)

        # -- jobs (the default in-process queue: the gateway runs them on the registered worker) ------
        _jobs(g, worker_id)

        # -- the audit trail holds every call, failed or not (written in the background: a bounded wait)
        def audited(r: httpx.Response) -> dict[str, list[tuple[str, int]]]:
            rows: dict[str, list[tuple[str, int]]] = {}
            for a in r.json()["records"]:
                if a["request_id"] in request_ids:
                    rows.setdefault(a["request_id"], []).append((a["endpoint"], a["status"]))
            return {rid: sorted(v) for rid, v in rows.items()}
        expected = dict(zip(request_ids, [
            [("enhance-prompt", 200)], [("chat", 200)], [("chat", 200)], [("generate-image", 200)],
            [("enhance-prompt", 200), ("generate-image", 200)], [("images-generations", 200)],
            [("ollama/chat", 200)], [("ollama/chat", 200)], [("ollama/generate", 200)], [("a1111/txt2img", 200)]],
            strict=True))
        deadline = time.monotonic() + 60  # a bound on waiting, not a speed goal
        while time.monotonic() < deadline:
            page = g.http.get("/audit", params={"limit": 1000}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            if page.status_code != 200 or audited(page) == expected:
                break
            time.sleep(0.2)
        g.call("GET", "/audit", check=lambda r: _assert(audited(r) == expected, f"audited: {audited(r)}"))

        # -- after the work: its counters (a caller key, as on the worker) ----------------------------
        def metrics(r: httpx.Response) -> None:
            assert r.headers["content-type"].startswith("text/plain")
            for endpoint in ("/enhance-prompt", "/chat", "/generate-image", "/v1/images/generations"):
                assert f'pureinfer_gateway_requests_total{{endpoint="{endpoint}",status="200"}}' in r.text, endpoint
            assert f'pureinfer_gateway_worker_healthy{{worker_id="{worker_id}",worker_type="all"}} 1.0' in r.text
            assert 'pureinfer_gateway_template_cache_total{result="hit"}' in r.text
            assert 'pureinfer_gateway_jobs{status="cancelled"}' in r.text  # refreshed every 5 s: present, maybe 0
        g.call("GET", "/metrics", key=CALLER_KEY, check=metrics)

        assert not g.failures, "\n".join(g.failures) + "\n\ngateway log:\n" + product.gateway.log_tail()
        assert not g.uncalled(), f"routes of the gateway's OpenAPI document without a smoke call: {g.uncalled()}"
    assert not product.gateway.problems(), product.gateway.problems()


def _job(g: SmokeClient, job_id: str, until: Any, timeout_s: float = 120) -> dict[str, Any]:
    """Poll GET /jobs/{id} (outside the route bookkeeping) until `until(job)`."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = g.http.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {CALLER_KEY}"}).json()
        if until(job) or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def _jobs(g: SmokeClient, worker_id: str) -> None:
    """POST /jobs (the seed's camelCase enhance request), its status, its SSE feed, the list, and
    the cancellation of a running job."""
    finished = ("succeeded", "failed", "cancelled")
    seed_request = {"prompt": "a lighthouse", "jobType": "image", "format": "png", "quality": "high",
                    "selectedModel": "qwen_instruct"}
    r = g.call("POST", "/jobs", {"type": "enhance", "params": seed_request}, key=CALLER_KEY, expect=202,
               check=lambda r: _assert(r.json()["status"] == "queued"))
    if r is None:
        return
    job_id = r.json()["job_id"]
    _job(g, job_id, lambda j: j["status"] in finished)

    def succeeded(r: httpx.Response) -> None:
        job = r.json()
        assert job["status"] == "succeeded", job
        assert isinstance(job["result"]["enhanced_prompt"], str) and job["result"]["original_prompt"] == "a lighthouse"
        assert job["result"]["execution_metadata"]["worker_id"] == worker_id and job["attempts"] == 1
    g.call("GET", f"/jobs/{job_id}", key=CALLER_KEY, check=succeeded)
    g.call("GET", f"/jobs/{job_id}/events", key=CALLER_KEY, check=lambda r: _assert(
        json.loads(sse_data(r.text)[-1])["status"] == "succeeded"))
    g.call("GET", "/jobs?status=succeeded", key=CALLER_KEY, check=lambda r: _assert(
        job_id in [j["job_id"] for j in r.json()["jobs"]]))
    # A long text job, cancelled while it runs: the worker stops it between two tokens.
    r = g.call("POST", "/jobs", {"type": "text", "params": {"message": "hi", "max_tokens": 1500, "temperature": 0}},
               key=CALLER_KEY, expect=202)
    if r is None:
        return
    long_id = r.json()["job_id"]
    _job(g, long_id, lambda j: j["status"] != "queued")
    g.call("POST", f"/jobs/{long_id}/cancel", key=CALLER_KEY, check=lambda r: _assert(
        r.json()["cancel_requested"] is True or r.json()["status"] == "cancelled"))
    job = _job(g, long_id, lambda j: j["status"] in finished)
    assert job["status"] == "cancelled", job


def _assert(condition: bool, message: str = "") -> None:
    assert condition, message
