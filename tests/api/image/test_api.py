"""The seed's image `/generate` and `/files` over HTTP, on the real tiny pipeline."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import pytest
from PIL import Image

from pureinfer.api.image.pnginfo import read_parameters
from tests.support.image import open_gate

BASE = {"prompt": "a red castle at sunset", "negative_prompt": "blurry", "width": 64, "height": 64,
        "steps": 3, "cfg_scale": 7.5}


def post(client, **fields):
    body = {**BASE, **fields}
    return client.post("/generate", json={k: v for k, v in body.items() if v is not ...})


def test_response_has_the_seed_shape_and_more(client) -> None:
    r = post(client, seed=1234, num_images=2, scheduler="euler_a")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert body["metadata"] == {"prompt": BASE["prompt"], "seed": 1234, "steps": 3, "cfg_scale": 7.5}
    assert body["image_url"] == body["images"][0]["url"]
    assert body["image_url"].startswith("http://testserver/files/") and body["image_url"].endswith(".png")
    assert [i["seed"] for i in body["images"]] == [1234, 1235]
    assert all((i["width"], i["height"]) == (64, 64) for i in body["images"])
    assert (body["negative_prompt"], body["scheduler"], body["width"], body["height"]) == ("blurry", "euler_a", 64, 64)
    assert body["model_used"] == "image" and body["generation_time"] > 0 and body["request_id"]
    assert body["tokens"] == {"prompt_tokens": 7, "negative_prompt_tokens": 3, "max_tokens": 77,
                              "prompt_tokens_dropped": 0, "negative_prompt_tokens_dropped": 0}
    png = client.get(body["image_url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    params = read_parameters(png.content)
    assert (params.prompt, params.negative_prompt, params.steps, params.scheduler, params.cfg_scale,
            params.seed, params.width, params.height, params.model) == (
        BASE["prompt"], "blurry", 3, "euler_a", 7.5, 1234, 64, 64, "image")
    thumb = client.get(body["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert body["images"][1]["thumbnail_url"] != body["thumbnail_url"]


def test_defaults_and_random_seed(client, serving, engine, local_store, image_settings) -> None:
    from pureinfer.api.image.protocol import ImageGenerateRequest
    from pureinfer.api.image.serving import ImageServing

    assert serving.default_size == 512  # 1024 clamped into the test bounds [64, 512]
    gate = open_gate(image_settings)
    assert ImageServing(engine, local_store, image_settings.model_copy(
        update={"image_min_size": None, "image_max_size": None}), gate).default_size == 1024  # bounds [256, 2048]
    small = ImageServing(engine, local_store, image_settings.model_copy(update={"image_max_size": 100}), gate)
    assert small.default_size == 96  # the largest multiple of 8 within the bounds
    body = asyncio.run(small.generate(ImageGenerateRequest(prompt="a cat", steps=2), "req-defaults"))
    assert (body["width"], body["height"], body["cfg_scale"], body["scheduler"]) == (96, 96, 7.5, "euler")
    assert 0 <= body["metadata"]["seed"] < 2**32
    assert body["negative_prompt"] == "" and body["tokens"]["negative_prompt_tokens"] == 0
    assert ImageGenerateRequest(prompt="x").model_dump() == {
        "prompt": "x", "negative_prompt": None, "width": None, "height": None, "steps": 20, "cfg_scale": 7.5,
        "seed": -1, "num_images": 1, "scheduler": "euler", "output": "url", "truncate": False,
        "stream": False}


def test_b64_json_output_and_reproducibility(client) -> None:
    a = post(client, seed=77, output="b64_json").json()
    b = post(client, seed=77, output="b64_json").json()
    c = post(client, seed=76, num_images=2, output="b64_json").json()
    assert a["image_url"] is None and a["images"][0]["url"] is None
    pixels = [np.asarray(Image.open(io.BytesIO(base64.b64decode(x["images"][i]["b64_json"]))))
              for x, i in ((a, 0), (b, 0), (c, 1), (c, 0))]
    assert np.array_equal(pixels[0], pixels[1])  # same seed, same pixels
    assert np.array_equal(pixels[0], pixels[2])  # image 1 of seed 76 is seed 77
    assert not np.array_equal(pixels[0], pixels[3])
    assert read_parameters(base64.b64decode(a["images"][0]["b64_json"])).seed == 77


@pytest.mark.parametrize(("fields", "field"), [
    ({"width": 100}, "width"),
    ({"height": 63}, "height"),
    ({"width": 56}, "width"),
    ({"height": 520}, "height"),
    ({"steps": 0}, "steps"),
    ({"steps": 151}, "steps"),
    ({"cfg_scale": -0.5}, "cfg_scale"),
    ({"cfg_scale": 30.5}, "cfg_scale"),
    ({"num_images": 0}, "num_images"),
    ({"num_images": 9}, "num_images"),
    ({"scheduler": "plms"}, "scheduler"),
    ({"output": "jpeg"}, "output"),
    ({"seed": -2}, "seed"),
    ({"seed": 2**32}, "seed"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": ...}, "prompt"),
    ({"truncate": "maybe"}, "truncate"),
    ({"sampler": "Euler"}, "sampler"),
])
def test_invalid_fields_are_named(client, fields: dict, field: str) -> None:
    r = post(client, **fields)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["success"] is False and body["error_code"] == "INVALID_PAYLOAD"
    assert field in [f["field"] for f in body["details"]["fields"]], body


def test_both_bad_sizes_are_reported_together(client) -> None:
    r = post(client, width=1000, height=12)
    body = r.json()
    assert (r.status_code, body["error_code"]) == (400, "INVALID_PAYLOAD")
    assert [f["field"] for f in body["details"]["fields"]] == ["width", "height"]
    assert "[64, 512]" in body["details"]["fields"][0]["message"]


def test_prompt_over_the_clip_window(client) -> None:
    long = "castle " * 80  # 80 words + BOS/EOS = 82 tokens
    r = post(client, prompt=long)
    body = r.json()
    assert (r.status_code, body["success"], body["error_code"]) == (400, False, "TOKEN_LIMIT_EXCEEDED")
    assert body["details"] == {"prompt_tokens": 82, "negative_prompt_tokens": 3, "max_tokens": 77,
                               "fields": ["prompt"]}
    r = post(client, negative_prompt=long)
    assert (r.status_code, r.json()["error_code"], r.json()["details"]["fields"]) == (
        400, "TOKEN_LIMIT_EXCEEDED", ["negative_prompt"])
    ok = post(client, prompt=long, negative_prompt="blurry " * 90, truncate=True, seed=5)
    assert ok.status_code == 200, ok.text
    assert ok.json()["tokens"] == {"prompt_tokens": 82, "negative_prompt_tokens": 92, "max_tokens": 77,
                                   "prompt_tokens_dropped": 5, "negative_prompt_tokens_dropped": 15}
    exact = post(client, prompt="castle " * 75, seed=5)  # 77 tokens: fits exactly
    assert exact.status_code == 200 and exact.json()["tokens"]["prompt_tokens"] == 77


@pytest.mark.parametrize("path", [
    "/files/../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", "/files/..%2f..%2fetc%2fpasswd",
    "/files//etc/passwd", "/files/2026-01-01/../../../etc/passwd", "/files/%2Fetc%2Fpasswd",
    "/files/2026-01-01/0123456789abcdef0123456789abcdef.png", "/files/secret.txt", "/files/",
])
def test_files_refuse_traversal_and_unknown_names(client, local_store, path: str) -> None:
    (local_store.root.parent / "secret.txt").write_text("do not serve")
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert b"do not serve" not in r.content and b"root:" not in r.content
    assert r.json()["error_code"] == "NOT_FOUND"


async def test_s3_end_to_end(engine, image_settings, s3_server) -> None:
    import httpx

    from pureinfer.api.image.protocol import ImageGenerateRequest
    from pureinfer.api.image.serving import ImageServing
    from pureinfer.storage import build_object_store

    settings = image_settings.model_copy(update={"storage": "s3", "s3_bucket": "images", "s3_prefix": "gen",
                                                 "s3_endpoint_url": s3_server, "s3_region": "us-east-1"})
    serving = ImageServing(engine, build_object_store(settings), settings, open_gate(settings))
    body = await serving.generate(ImageGenerateRequest(**BASE, seed=9), "req-s3")
    assert body["image_url"].startswith(f"{s3_server}/images/gen/") and "X-Amz-Signature=" in body["image_url"]
    async with httpx.AsyncClient() as http:
        png = (await http.get(body["image_url"])).content
        thumb = await http.get(body["thumbnail_url"])
    assert read_parameters(png).seed == 9 and thumb.headers["content-type"] == "image/webp"
    assert serving.info()["storage"]["kind"] == "s3"


def test_info_stats_and_metrics(client, serving) -> None:
    """One image and one refused request move each counter by exactly one (the serving and engine
    are shared by the session: counts are compared with a snapshot, not with zero)."""
    from prometheus_client import REGISTRY

    def counters() -> dict[str, float]:
        stats = serving.stats()
        sample = {name: REGISTRY.get_sample_value(name, labels) or 0.0 for name, labels in [
            ("pureinfer_images_generated_total", None), ("pureinfer_image_batch_size_count", None),
            ("pureinfer_image_seconds_per_image_count", None),
            ("pureinfer_image_requests_total", {"outcome": "ok"})]}
        return {**sample, "refused": REGISTRY.get_sample_value(
            "pureinfer_image_requests_total", {"outcome": "TOKEN_LIMIT_EXCEEDED"}) or 0.0,
            "images_generated": stats["images_generated"], "requests": stats["requests"],
            "failed_requests": stats["failed_requests"], "batches": sum(stats["batch_sizes"].values())}

    before = counters()
    assert post(client, seed=3).status_code == 200
    refused = post(client, prompt="castle " * 80)
    assert (refused.status_code, refused.json()["error_code"]) == (400, "TOKEN_LIMIT_EXCEEDED")
    after = counters()
    assert {k: after[k] - before[k] for k in after} == {k: 1 for k in after}
    info, stats = serving.info(), serving.stats()
    assert info["size_bounds"] == [64, 512] and info["max_prompt_tokens"] == 77 and info["exact_batching"]
    assert info["storage"]["kind"] == "local" and "euler_a" in info["schedulers"]
    assert stats["seconds_per_image"] > 0 and stats["queue_depth"] == 0
    assert REGISTRY.get_sample_value("pureinfer_image_queue_depth") == 0


def test_generate_is_not_mounted_when_the_dispatcher_owns_it(serving, app_factory) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app_factory(lambda: serving, mount_generate=False)) as c:
        missing = c.post("/generate", json=BASE)
        assert missing.status_code == 404
        assert (missing.json()["error_code"], missing.json()["error"]) == (
            "NOT_FOUND", "No such endpoint or resource: /generate")  # no route, not an image error
        openai = c.post("/v1/images/generations", json={"prompt": "x", "size": "64x64", "steps": 2, "seed": 4})
        assert openai.status_code == 200, openai.text
        assert [d["url"].startswith("http://testserver/files/") for d in openai.json()["data"]] == [True]


async def test_request_log_carries_the_request_id_and_no_prompt(serving, caplog) -> None:
    import logging

    from pureinfer.api.image.protocol import ImageGenerateRequest
    from pureinfer.logging import request_id_var

    caplog.set_level(logging.INFO, logger="pureinfer")
    await serving.generate(ImageGenerateRequest(**BASE, seed=1), "rid-log-1")  # no context id: set here
    token = request_id_var.set("rid-from-middleware")
    try:
        await serving.generate(ImageGenerateRequest(**BASE, seed=2), "rid-from-middleware")
    finally:
        request_id_var.reset(token)
    done = [r for r in caplog.records if r.getMessage() == "image request done"]
    assert [r.request_id for r in done] == ["rid-log-1", "rid-from-middleware"]
    assert all(r.seed in (1, 2) and r.batch_size == 1 for r in done)
    batch = [r for r in caplog.records if r.getMessage() == "image batch done"]
    assert batch and batch[-1].request_ids == ["rid-from-middleware"]
