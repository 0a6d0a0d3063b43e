"""Every public endpoint of `pureinfer worker --demo --role all`, called once as a real process,
streaming and not: 2xx and a body of the documented shape, the routes taken from the worker's own
OpenAPI document (a new endpoint without a call here fails), and a log without tracebacks."""

from __future__ import annotations

import hashlib
import json
import re

import httpx

from tests.smoke.conftest import WORKER_KEY, WORKER_SECRET, Product
from tests.support.product import SmokeClient, sse_data

MESSAGES = [{"role": "system", "content": "You are a prompt engineer."}, {"role": "user", "content": "A sunset"}]
SHA256 = re.compile(r"[0-9a-f]{64}")
IMAGE = {"width": 64, "height": 64, "steps": 1, "seed": 7}


def text_response(field: str):
    """The seed's text response: the output in `field`, and the proof of what ran."""
    def check(r: httpx.Response) -> None:
        body = r.json()
        assert body["success"] is True and body["pure_inference"] is True
        assert isinstance(body[field], str)
        assert SHA256.fullmatch(body["prompt_sha256"]) and body["prompt_tokens"] > 0
        assert body["tokens_generated"] >= 1 and body["finish_reason"] in ("stop", "length")
        assert body["model_used"] == "qwen_instruct"
        assert body["request_id"] == r.headers["x-request-id"]
    return check


def text_stream(field: str):
    """SSE: text deltas, one final event with every response field, then [DONE]."""
    def check(r: httpx.Response) -> None:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_data(r.text)
        assert events[-1] == "[DONE]", events[-3:]
        final = json.loads(events[-2])
        assert SHA256.fullmatch(final["prompt_sha256"]) and final["finish_reason"] in ("stop", "length")
        assert final["tokens_generated"] >= 1 and field in final
    return check


def fields(**expected: object):
    """The body holds these top-level fields with these values."""
    def check(r: httpx.Response) -> None:
        body = r.json()
        assert {k: body.get(k) for k in expected} == expected
    return check


def png(r: httpx.Response) -> None:
    assert r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG\r\n\x1a\n")


def webp(r: httpx.Response) -> None:
    assert r.headers["content-type"] == "image/webp" and r.content[8:12] == b"WEBP"


def test_every_worker_endpoint(product: Product) -> None:
    with SmokeClient("worker", product.worker_url, key=WORKER_KEY, secret=WORKER_SECRET) as w:
        w.load_routes()
        # The gateway's smoke test draws images on this worker too: count this test's own.
        images_before = _images_generated(w)

        # -- ops ----------------------------------------------------------------------------------
        w.call("GET", "/health/live", auth=False, check=fields(status="alive"))
        w.call("GET", "/health/ready", auth=False, check=fields(ready=True, state="ready"))
        w.call("GET", "/health", check=fields(status="healthy", state="ready", worker_type="all"))

        def worker_info(r: httpx.Response) -> None:
            info = r.json()["worker_info"]
            assert info["worker_type"] == "all" and info["models"] == ["qwen_instruct", "pureinfer-demo-sdxl"]
            assert set(info["endpoints"]) == {path for _, path in w.routes}, "endpoints unlike the OpenAPI document"
        w.call("GET", "/worker/info", check=worker_info)

        # -- the seed's text API ----------------------------------------------------------------------
        w.call("POST", "/chat", {"messages": MESSAGES, "max_tokens": 4}, check=text_response("response"))
        w.call("POST", "/chat", {"messages": MESSAGES, "max_tokens": 4, "stream": True}, check=text_stream("response"))
        w.call("POST", "/enhance", {"messages": MESSAGES, "max_tokens": 4}, check=text_response("enhanced_prompt"))
        w.call("POST", "/generate", {"messages": MESSAGES, "max_tokens": 4}, check=text_response("response"))
        raw = "Once upon a time"

        def exact_prompt(r: httpx.Response) -> None:
            text_response("response")(r)
            assert r.json()["prompt_sha256"] == hashlib.sha256(raw.encode()).hexdigest()
        w.call("POST", "/generate", {"prompt": raw, "max_tokens": 4}, check=exact_prompt)

        # -- images, and the files they are served from --------------------------------------------------
        def image_response(r: httpx.Response) -> None:
            body = r.json()
            assert body["success"] is True and body["image_url"] == body["images"][0]["url"]
            assert (body["width"], body["height"], body["steps"], body["images"][0]["seed"]) == (64, 64, 1, 7)
            assert body["tokens"]["prompt_tokens"] > 0 and body["model_used"] == "pureinfer-demo-sdxl"
        image = w.call("POST", "/generate", {"prompt": "a fox in the snow", **IMAGE}, check=image_response)
        if image is not None:
            w.fetch(image.json()["image_url"], check=png)
            w.fetch(image.json()["thumbnail_url"], check=webp)
            assert image.json()["execution_metadata"]["worker_type"] == "image"

        def image_stream(r: httpx.Response) -> None:
            """SSE: {progress: {step, total}} per denoising step, the whole response, [DONE]."""
            assert r.headers["content-type"].startswith("text/event-stream")
            events = sse_data(r.text)
            assert events[-1] == "[DONE]", events[-3:]
            *progress, final = (json.loads(e) for e in events[:-1])
            assert [p["progress"] for p in progress] == [{"step": 1, "total": 2}, {"step": 2, "total": 2}]
            image_response_fields = (final["width"], final["steps"], final["images"][0]["seed"])
            assert final["success"] is True and image_response_fields == (64, 2, 7)
        w.call("POST", "/generate", {"prompt": "a fox in the snow", **IMAGE, "steps": 2, "stream": True},
               check=image_stream)

        # -- the OpenAI-compatible API ------------------------------------------------------------------
        def models(r: httpx.Response) -> None:
            assert r.json()["object"] == "list" and "qwen_instruct" in {m["id"] for m in r.json()["data"]}
        w.call("GET", "/v1/models", check=models)

        def completion(r: httpx.Response) -> None:
            body = r.json()
            assert body["object"] == "chat.completion" and body["model"] == "qwen_instruct"
            message = body["choices"][0]["message"]
            assert message["role"] == "assistant" and isinstance(message["content"], str)
            usage = body["usage"]
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
        w.call("POST", "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 4}, check=completion)

        def completion_stream(r: httpx.Response) -> None:
            events = sse_data(r.text)
            assert events[-1] == "[DONE]", events[-3:]
            chunks = [json.loads(e) for e in events[:-1]]
            assert all(c["object"] == "chat.completion.chunk" for c in chunks)
            assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        w.call("POST", "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 4, "stream": True},
               check=completion_stream)

        def images_response(r: httpx.Response) -> None:
            body = r.json()
            assert isinstance(body["created"], int) and len(body["data"]) == 1 and body["data"][0]["url"]
        generated = w.call("POST", "/v1/images/generations",
                           {"prompt": "a lighthouse", "size": "64x64", "steps": 1, "seed": 3}, check=images_response)
        if generated is not None:
            w.fetch(generated.json()["data"][0]["url"], check=png)

        # -- after the work: its counters -------------------------------------------------------------
        def metrics(r: httpx.Response) -> None:
            assert r.headers["content-type"].startswith("text/plain")
            for endpoint in ("/chat", "/generate", "/v1/chat/completions"):
                assert f'pureinfer_requests_total{{endpoint="{endpoint}",status="200"}}' in r.text, endpoint
        w.call("GET", "/metrics", check=metrics)

        def status(r: httpx.Response) -> None:
            body = r.json()
            assert (body["status"], body["worker_info"]["type"]) == ("operational", "all")
            assert body["performance"]["image"]["images_generated"] - images_before == 3
        w.call("GET", "/status", check=status)

        assert not w.failures, "\n".join(w.failures) + "\n\nworker log:\n" + product.worker.log_tail()
        assert not w.uncalled(), f"routes of the worker's OpenAPI document without a smoke call: {w.uncalled()}"
    assert not product.worker.problems(), product.worker.problems()


def _images_generated(w: SmokeClient) -> int:
    r = w.http.get("/status", headers=w.headers("GET", "/status", b"", key=w.key, secret=w.secret))
    assert r.status_code == 200, r.text
    return int(r.json()["performance"]["image"]["images_generated"])
