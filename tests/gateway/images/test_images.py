"""Images through the gateway, against real image workers on the tiny demo SDXL pipeline over
loopback HTTP: the sync route and OpenAI's, enhancement by a real demo text worker, progress and
cancellation through `ImageService`, coded errors, and the audit rows of image requests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pureinfer.settings import WorkerSettings
from pureinfer.worker.app import create_app as create_worker_app
from tests.support.gateway import ADMIN, CALLER, WORKER_KEY, WORKER_SECRET, tpl
from tests.support.image import image_worker_settings
from tests.support.live import LiveServer, free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")

IMAGE = {"prompt": "a red castle at sunset", "width": 64, "height": 64, "steps": 3, "seed": 21}


@pytest.fixture(scope="module")
def image_worker(image_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real image worker (role image, the tiny SDXL pipeline) that checks the gateway's key and
    signature, as in production."""
    port = free_port()
    settings = image_worker_settings(image_model_dir, tmp_path_factory.mktemp("gw-image-worker"),
                                     api_keys=[WORKER_KEY], signing_secret=WORKER_SECRET, port=port,
                                     image_batch_wait_ms=0)
    with LiveServer(create_worker_app(settings), port=port) as server:
        yield server


@pytest.fixture(scope="module")
def text_worker(cache_dir: Path) -> Iterator[LiveServer]:
    port = free_port()
    settings = WorkerSettings(demo=True, cache_dir=cache_dir, role="chat", api_keys=[WORKER_KEY],
                              signing_secret=WORKER_SECRET, port=port)
    with LiveServer(create_worker_app(settings), port=port) as server:
        yield server


async def gateway_with(make_gateway: Callable[..., Any], database_url: str,
                       workers: list[tuple[LiveServer, str]], **settings: Any) -> tuple[Any, httpx.AsyncClient]:
    app, c = await make_gateway(database_url, **settings)
    for server, worker_type in workers:
        r = await c.post("/workers", json={"url": server.url, "worker_type": worker_type}, headers=ADMIN)
        assert r.status_code == 201 and r.json()["healthy"] is True, r.text
    return app, c


async def audit_rows(c: httpx.AsyncClient, request_id: str, n: int = 1) -> list[dict[str, Any]]:
    """The audit rows of a request, once the asynchronous writer stored them."""
    deadline = time.monotonic() + 30
    while True:
        rows = (await c.get(f"/audit?request_id={request_id}", headers=ADMIN)).json()["records"]
        if len(rows) >= n:
            return rows
        assert time.monotonic() < deadline, rows
        await asyncio.sleep(0.05)


def engine_of(server: LiveServer) -> Any:
    return server.app.state.runtime.image.engine


async def test_generate_image_end_to_end_with_its_audit_row(make_gateway, database_url, image_worker):
    app, c = await gateway_with(make_gateway, database_url, [(image_worker, "image")])
    r = await c.post("/generate-image", json=IMAGE | {"num_images": 2, "negative_prompt": "blurry"},
                     headers=CALLER | {"X-Request-ID": "img-e2e"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["request_id"] == "img-e2e"
    assert [i["seed"] for i in body["images"]] == [21, 22] and body["image_url"] == body["images"][0]["url"]
    assert body["original_prompt"] == body["prompt_used"] == IMAGE["prompt"] and body["enhancement"] is None
    md = body["execution_metadata"]
    worker_id = (await c.get("/workers", headers=ADMIN)).json()[0]["id"]
    assert (md["worker_type"], md["architecture"], md["worker_id"], md["attempts"]) == (
        "image", "pure_inference_engine", worker_id, 1)
    assert md["seeds"] == [21, 22] and md["gateway_latency_ms"] > 0
    async with httpx.AsyncClient(timeout=30) as direct:  # the worker serves the file it stored
        png = await direct.get(body["image_url"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

    [row] = await audit_rows(c, "img-e2e")
    assert (row["endpoint"], row["status"], row["worker_type"], row["worker_id"]) == (
        "generate-image", 200, "image", worker_id)
    assert row["seeds"] == [21, 22] and row["asset_urls"] == [i["url"] for i in body["images"]]
    params = row["image_params"]
    assert (params["width"], params["height"], params["steps"], params["sampler"], params["num_images"]) == (
        64, 64, 3, "euler", 2)
    assert params["negative_prompt_preview"] == "blurry" and row["prompt_preview"] == IMAGE["prompt"]
    assert row["timings"]["generation_time"] > 0 and row["model_used"] == body["model_used"]
    assert row["attempts"] == 1 and len(row["prompt_sha256"]) == 64


async def test_openai_images_route(make_gateway, sqlite_url, image_worker):
    _, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")])
    r = await c.post("/v1/images/generations", json={"prompt": "a lighthouse", "size": "64x64", "steps": 2,
                                                     "seed": 3, "n": 2}, headers=CALLER)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 2 and all(d["url"].endswith(".png") and d["revised_prompt"] is None for d in data)
    b64 = await c.post("/v1/images/generations", json={"prompt": "a lighthouse", "size": "64x64", "steps": 2,
                                                       "response_format": "b64_json"}, headers=CALLER)
    assert b64.status_code == 200 and b64.json()["data"][0]["b64_json"] and b64.json()["data"][0]["url"] is None
    row = (await audit_rows(c, r.headers["x-request-id"]))[0]
    assert row["endpoint"] == "images-generations" and len(row["seeds"]) == 2


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x1c", "\x0b", "\x0c", "\r"])
async def test_a_prompt_with_a_unicode_line_separator_is_drawn(make_gateway, sqlite_url, image_worker, separator):
    """The worker's final SSE event echoes the prompt as raw UTF-8 (JSON leaves U+2028, NEL and the
    like unescaped). The gateway read the stream with httpx's `aiter_lines`, which splits at every
    `str.splitlines` boundary, cut that event in two and answered 500 "not JSON" (found by the
    2,000-request fuzz run). SSE lines end at CR/LF only."""
    _, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")])
    prompt = f"a castle{separator}at dusk"
    r = await c.post("/v1/images/generations", json={"prompt": prompt, "size": "64x64", "steps": 1, "seed": 4},
                     headers=CALLER)
    assert r.status_code == 200, r.text
    assert r.json()["data"][0]["url"].endswith(".png")
    r = await c.post("/generate-image", json={**IMAGE, "prompt": prompt, "steps": 1}, headers=CALLER)
    assert r.status_code == 200, r.text
    assert r.json()["prompt_used"] == prompt


@pytest.mark.parametrize(("body", "field"), [
    ({"width": 65}, "width"), ({"steps": 0}, "steps"), ({"num_images": 9}, "num_images"),
    ({"scheduler": "plms"}, "scheduler"), ({"prompt": "  "}, "prompt"), ({"colour": "red"}, "colour"),
])
async def test_bad_fields_are_named_before_any_worker_is_called(make_gateway, sqlite_url, image_worker, body, field):
    _, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")])
    r = await c.post("/generate-image", json=IMAGE | body, headers=CALLER)
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD"
    assert field in [f["field"] for f in r.json()["details"]["fields"]]


async def test_the_workers_refusal_passes_through_and_is_audited(make_gateway, sqlite_url, image_worker):
    _, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")])
    # 1024 is a valid size for the gateway; this worker's bounds are [64, 512].
    r = await c.post("/generate-image", json=IMAGE | {"width": 1024}, headers=CALLER | {"X-Request-ID": "too-wide"})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PAYLOAD"
    assert r.json()["details"]["fields"][0]["field"] == "width" and r.json()["request_id"] == "too-wide"
    long_prompt = await c.post("/generate-image", json=IMAGE | {"prompt": "castle " * 100}, headers=CALLER)
    assert long_prompt.status_code == 400 and long_prompt.json()["error_code"] == "TOKEN_LIMIT_EXCEEDED"
    [row] = await audit_rows(c, "too-wide")
    assert (row["status"], row["error_code"], row["worker_type"]) == (400, "INVALID_PAYLOAD", "image")
    assert row["image_params"]["width"] == 1024 and row["seeds"] is None and row["attempts"] == 1


async def test_no_image_worker_is_worker_unavailable(make_gateway, sqlite_url, text_worker):
    _, c = await gateway_with(make_gateway, sqlite_url, [(text_worker, "chat")])
    r = await c.post("/generate-image", json=IMAGE, headers=CALLER | {"X-Request-ID": "no-image-worker"})
    assert r.status_code == 503 and r.json()["error_code"] == "WORKER_UNAVAILABLE"
    assert r.json()["details"]["worker_type"] == "image"
    [row] = await audit_rows(c, "no-image-worker")
    assert row["error_code"] == "WORKER_UNAVAILABLE" and row["worker_id"] is None


async def test_callers_need_a_key(make_gateway, sqlite_url, image_worker):
    _, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")])
    for path in ("/generate-image", "/v1/images/generations"):
        assert (await c.post(path, json={"prompt": "x"})).json()["error_code"] == "UNAUTHORIZED"


async def test_enhance_draws_the_enhanced_prompt_and_reports_both(make_gateway, sqlite_url, image_worker,
                                                                   text_worker):
    app, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image"), (text_worker, "chat")])
    assert (await c.post("/templates", json=tpl(token_limit=12), headers=ADMIN)).status_code == 201
    r = await c.post("/generate-image", json=IMAGE | {"enhance": True}, headers=CALLER | {"X-Request-ID": "enh"})
    assert r.status_code == 200, r.text
    body = r.json()
    enh = body["enhancement"]
    assert body["original_prompt"] == IMAGE["prompt"] and body["prompt_used"] == enh["enhanced_prompt"]
    assert enh["template_name"] == "sdxl_instruct_sfw" and enh["template_version"] == 1
    assert enh["strategy"].startswith("template sdxl_instruct_sfw v1") and enh["request_id"] == "enh"
    assert body["metadata"]["prompt"] == body["prompt_used"]  # the worker drew the enhanced prompt
    rows = {row["endpoint"]: row for row in await audit_rows(c, "enh", n=2)}
    assert set(rows) == {"enhance-prompt", "generate-image"}
    image_row = rows["generate-image"]
    assert image_row["template_name"] == "sdxl_instruct_sfw" and image_row["strategy"] == enh["strategy"]
    assert image_row["image_params"]["original_prompt_preview"] == IMAGE["prompt"]
    assert image_row["timings"]["enhance_ms"] > 0
    assert image_row["image_params"]["truncate"] is None  # not given: the worker got truncate=true
    openai = await c.post("/v1/images/generations", json={"prompt": "a cat", "size": "64x64", "steps": 1,
                                                          "enhance": True}, headers=CALLER)
    assert openai.status_code == 200, openai.text
    assert openai.json()["data"][0]["revised_prompt"]


async def test_service_reports_progress_in_order_up_to_total(make_gateway, sqlite_url, image_worker):
    from pureinfer.gateway.images.protocol import GenerateImageRequest

    app, _ = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")])
    seen: list[tuple[int, int]] = []

    async def on_progress(step: int, total: int) -> None:  # awaitable handlers are awaited
        seen.append((step, total))

    out = await app.state.gateway.images.generate(GenerateImageRequest(**IMAGE | {"steps": 5}),
                                                  request_id="svc-progress", on_progress=on_progress)
    assert seen == [(i, 5) for i in range(1, 6)]
    assert out["images"][0]["seed"] == 21 and out["execution_metadata"]["worker_type"] == "image"


async def test_cancel_closes_the_stream_and_the_worker_stops(make_gateway, sqlite_url, image_worker):
    """Cancelled at step 2 of 150 while the worker's UNet is held inside step 3: the gateway
    closes the stream, the worker returns its permit while the step is still held, and once
    released it stops the batch there."""
    from pureinfer.gateway.images.protocol import GenerateImageRequest
    from pureinfer.gateway.images.service import ImageCancelled

    app, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")])
    engine, runtime = engine_of(image_worker), image_worker.app.state.runtime
    before = engine.stats()
    release = threading.Event()
    cancel = asyncio.Event()

    def held(_module: Any, _args: Any) -> None:
        if cancel.is_set():  # the engine thread waits inside the step
            release.wait(60)

    def on_progress(step: int, total: int) -> None:
        if step == 2:
            cancel.set()

    handle = engine._pipe.unet.register_forward_pre_hook(held)
    try:
        with pytest.raises(ImageCancelled):
            await app.state.gateway.images.generate(GenerateImageRequest(**IMAGE | {"steps": 150}),
                                                    request_id="svc-cancel", on_progress=on_progress, cancel=cancel)
        deadline = time.monotonic() + 60
        while runtime.admission.in_flight:
            assert time.monotonic() < deadline, "the worker never noticed the closed stream"
            await asyncio.sleep(0.01)
    finally:
        handle.remove()
        release.set()
    deadline = time.monotonic() + 60
    while engine.num_running or engine.num_waiting:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    after = engine.stats()
    assert after["abandoned_batches"] == before["abandoned_batches"] + 1
    assert after["denoise_steps"] - before["denoise_steps"] < 150
    [row] = await audit_rows(c, "svc-cancel")
    assert (row["status"], row["error_code"]) == (499, "CANCELLED") and row["timings"]["steps_seen"] >= 2
    assert (app.state.gateway.registry.workers[row["worker_id"]].in_flight) == 0


async def test_a_caller_that_leaves_cancels_the_generation(tmp_path, sqlite_url, image_worker):
    """Over real HTTP: the caller sends /generate-image and closes its socket while the worker's
    UNet is held inside a step; the gateway closes the worker stream, the worker returns its permit,
    and the audit row says 499 CLIENT_DISCONNECTED."""
    import json
    import socket

    from pureinfer.gateway.app import create_app
    from tests.support.gateway import gateway_settings

    engine, runtime = engine_of(image_worker), image_worker.app.state.runtime
    before = engine.stats()
    in_step, release = threading.Event(), threading.Event()

    def held(_module: Any, _args: Any) -> None:  # the engine thread waits inside the step
        in_step.set()
        release.wait(60)

    with LiveServer(create_app(gateway_settings(tmp_path, sqlite_url))) as gateway:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as c:
            r = await c.post("/workers", json={"url": image_worker.url, "worker_type": "image"}, headers=ADMIN)
            assert r.status_code == 201, r.text
            handle = engine._pipe.unet.register_forward_pre_hook(held)
            try:
                body = json.dumps(IMAGE | {"steps": 150}).encode()
                sock = socket.create_connection(("127.0.0.1", gateway.port))
                sock.sendall(f"POST /generate-image HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                             f"\r\nAuthorization: Bearer {CALLER['Authorization'][7:]}\r\nX-Request-ID: gone-1\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
                assert await asyncio.to_thread(in_step.wait, 60), "the request never reached the worker's engine"
                sock.close()
                deadline = time.monotonic() + 60
                while runtime.admission.in_flight:
                    assert time.monotonic() < deadline, "the worker never noticed the closed stream"
                    await asyncio.sleep(0.01)
            finally:
                handle.remove()
                release.set()
            [row] = await audit_rows(c, "gone-1")
    assert (row["status"], row["error_code"], row["worker_type"]) == (499, "CLIENT_DISCONNECTED", "image")
    deadline = time.monotonic() + 60
    while engine.num_running or engine.num_waiting:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert engine.stats()["abandoned_batches"] == before["abandoned_batches"] + 1


async def test_full_audit_keeps_the_prompts_whole(make_gateway, sqlite_url, image_worker):
    _, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")], audit_prompts="full",
                              audit_preview_chars=10)
    r = await c.post("/generate-image", json=IMAGE | {"negative_prompt": "blurry, low quality, deformed"},
                     headers=CALLER | {"X-Request-ID": "full-img"})
    assert r.status_code == 200, r.text
    [row] = await audit_rows(c, "full-img")
    assert row["prompt_preview"] == IMAGE["prompt"][:10] + "..."  # previews stay previews
    params = row["image_params"]
    assert params["prompt"] == IMAGE["prompt"] and params["negative_prompt"] == "blurry, low quality, deformed"
    assert params["negative_prompt_preview"] == "blurry, lo..."
