"""A1111's API on an image worker, driven by the `webuiapi` client against a real uvicorn server
on the tiny SDXL pipeline: txt2img with A1111's seed rule (all_seeds = seed + i over
batch_size * n_iter), `info` as a JSON string, PNGs with their parameters chunk, the catalogue and
options routes, progress of a running job, errors in A1111's shape with our codes, and the one
image path (the native /generate with the same seed draws the same pixels)."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import webuiapi
from PIL import Image

from pureinfer.api.image.pnginfo import read_parameters
from pureinfer.worker.app import create_app
from tests.support.image import image_worker_settings
from tests.support.live import LiveServer

KEY = "a1111-key"
MODEL = "image"  # the tiny pipeline's folder name
SMALL: dict[str, Any] = {"width": 64, "height": 64, "steps": 2, "cfg_scale": 5.0}


@pytest.fixture(scope="module")
def server(image_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = image_worker_settings(image_model_dir, tmp_path_factory.mktemp("a1111"), api_keys=[KEY])
    with LiveServer(create_app(settings)) as s:
        yield s


@pytest.fixture
def api(server: LiveServer) -> webuiapi.WebUIApi:
    client = webuiapi.WebUIApi(baseurl=server.url + "/sdapi/v1")
    client.session.headers["Authorization"] = f"Bearer {KEY}"
    return client


def _post(server: LiveServer, path: str, body: Any, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(server.url + path, json=body, headers=headers, timeout=120)


def test_txt2img_with_a1111_seeds(api: webuiapi.WebUIApi) -> None:
    r = api.txt2img(prompt="a red fox", negative_prompt="blurry", seed=42, batch_size=2, n_iter=2,
                    sampler_name="Euler a", **SMALL)
    assert r.info["seed"] == 42 and r.info["all_seeds"] == [42, 43, 44, 45]
    assert r.info["sampler_name"] == "Euler a" and (r.info["width"], r.info["height"], r.info["steps"]) == (64, 64, 2)
    assert len(r.images) == 4 and all(img.size == (64, 64) for img in r.images)
    assert r.parameters["prompt"] == "a red fox" and r.parameters["batch_size"] == 2
    assert len(r.info["infotexts"]) == 4 and "Seed: 44" in r.info["infotexts"][2]
    assert r.info["request_id"]  # ours, beside A1111's fields


def test_images_carry_their_parameters_and_match_the_native_path(server: LiveServer) -> None:
    body = {"prompt": "a lighthouse", "seed": 7, "batch_size": 2, "sampler_name": "Euler", **SMALL}
    answer = _post(server, "/sdapi/v1/txt2img", body).json()
    pngs = [base64.b64decode(b) for b in answer["images"]]
    assert [read_parameters(p).seed for p in pngs] == [7, 8]
    assert read_parameters(pngs[0]).scheduler == "euler" and read_parameters(pngs[0]).steps == 2

    native = _post(server, "/generate", {"prompt": "a lighthouse", "seed": 7, "num_images": 2, "scheduler": "euler",
                                         "output": "b64_json", **SMALL}).json()
    for ours, theirs in zip(pngs, native["images"], strict=True):
        a = Image.open(io.BytesIO(ours)).tobytes()
        b = Image.open(io.BytesIO(base64.b64decode(theirs["b64_json"]))).tobytes()
        assert a == b


def test_random_seed_and_no_images(server: LiveServer) -> None:
    answer = _post(server, "/sdapi/v1/txt2img", {"prompt": "a cat", "seed": -1, "batch_size": 3, **SMALL}).json()
    import json

    info = json.loads(answer["info"])
    first = info["seed"]
    assert first >= 0 and info["all_seeds"] == [first, first + 1, first + 2]
    quiet = _post(server, "/sdapi/v1/txt2img", {"prompt": "a cat", "seed": 1, "send_images": False, **SMALL}).json()
    assert quiet["images"] == [] and json.loads(quiet["info"])["all_seeds"] == [1]


def test_catalogue_and_options(api: webuiapi.WebUIApi, server: LiveServer) -> None:
    models = api.get_sd_models()
    assert [m["title"] for m in models] == [MODEL]
    assert set(api.util_get_sampler_names()) == {"DDIM", "DPM++ 2M", "Euler", "Euler a"}
    assert api.util_get_current_model() == MODEL
    api.util_set_model(MODEL)  # the model it serves: accepted
    assert _post(server, "/sdapi/v1/options", {"sd_model_checkpoint": f"{MODEL}.safetensors [abc123]"}).status_code == 200
    other = _post(server, "/sdapi/v1/options", {"sd_model_checkpoint": "sd_xl_refiner"})
    assert other.status_code == 400
    assert other.json()["error"] == "INVALID_PAYLOAD" and other.json()["details"]["fields"][0]["field"] == \
        "sd_model_checkpoint"
    assert _post(server, "/sdapi/v1/options", {"samples_format": "jpg"}).status_code == 400


def test_progress_of_a_running_job(api: webuiapi.WebUIApi, server: LiveServer) -> None:
    idle = api.get_progress()
    assert idle["progress"] == 0.0 and idle["state"]["job_count"] == 0
    done = threading.Event()

    def run() -> None:
        try:
            _post(server, "/sdapi/v1/txt2img", {"prompt": "a slow one", "seed": 3, **SMALL, "steps": 40,
                                                "width": 256, "height": 256})
        finally:
            done.set()

    worker = threading.Thread(target=run)
    worker.start()
    seen: dict[str, Any] = {}
    while not done.is_set():
        p = api.get_progress()
        if p["state"]["job_count"] == 1 and p["state"]["sampling_step"] >= 1:
            seen = p
            break
    worker.join(timeout=120)
    assert seen, "the job finished before any progress poll saw a denoising step"
    assert seen["state"]["sampling_steps"] == 40 and seen["state"]["job"].startswith("txt2img")
    assert 0 < seen["progress"] == round(seen["state"]["sampling_step"] / 40, 4) <= 1
    assert seen["eta_relative"] >= 0
    assert api.get_progress()["state"]["job_count"] == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"width": 65}, "width"),
    ({"steps": 0}, "steps"),
    ({"enable_hr": True}, "enable_hr"),
    ({"sampler_name": "DPM++ 2M Karras"}, "sampler_name"),
    ({"scheduler": "Karras"}, "scheduler"),
    ({"batch_size": 4, "n_iter": 3}, "body"),
    ({"override_settings": {"CLIP_stop_at_last_layers": 2}}, "override_settings"),
    ({"prompt": "  "}, "prompt"),
])
def test_bad_requests_are_coded_400s_in_a1111_shape(api: webuiapi.WebUIApi, server: LiveServer,
                                                    body: dict[str, Any], field: str) -> None:
    payload = {"prompt": "a dog", **SMALL, **body}
    with pytest.raises(RuntimeError) as info:
        api.txt2img(**payload)
    assert info.value.args[0] == 400
    r = _post(server, "/sdapi/v1/txt2img", payload)
    err = r.json()
    assert r.status_code == 400 and err["error"] == err["error_code"] == "INVALID_PAYLOAD"
    assert isinstance(err["detail"], str) and err["detail"] == err["errors"]
    assert field in {f["field"] for f in err["details"]["fields"]}


def test_the_key_is_required_in_a1111_shape(server: LiveServer) -> None:
    r = _post(server, "/sdapi/v1/txt2img", {"prompt": "a dog", **SMALL}, key=None)
    assert r.status_code == 401 and r.json()["error"] == "UNAUTHORIZED" and r.json()["detail"]
    assert httpx.get(server.url + "/sdapi/v1/sd-models").status_code == 401
