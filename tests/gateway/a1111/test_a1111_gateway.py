"""A1111's API through the gateway, driven by `webuiapi`: a real gateway in front of a real image
worker (tiny SDXL pipeline) that checks the gateway's key and signature. txt2img runs the
gateway's image path (A1111's seeds, `info` with the PNGs' own parameters, the audit row), the
progress route follows a running job, and errors take A1111's shape with our codes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import webuiapi

from pureinfer.gateway.app import create_app
from pureinfer.worker.app import create_app as create_worker_app
from tests.support.gateway import ADMIN, CALLER, CALLER_KEY, WORKER_KEY, WORKER_SECRET, gateway_settings
from tests.support.image import image_worker_settings
from tests.support.live import LiveServer, free_port

MODEL = "image"  # the tiny pipeline's folder name
SMALL: dict[str, Any] = {"width": 64, "height": 64, "steps": 2, "cfg_scale": 5.0}


@pytest.fixture(scope="module")
def gateway(image_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("a1111-gw")
    port = free_port()
    worker = LiveServer(create_worker_app(image_worker_settings(
        image_model_dir, tmp, api_keys=[WORKER_KEY], signing_secret=WORKER_SECRET, port=port)), port=port).start()
    gw = LiveServer(create_app(gateway_settings(tmp, f"sqlite:///{tmp / 'gw.db'}"))).start()
    try:
        r = httpx.post(gw.url + "/workers", json={"url": worker.url, "worker_type": "image", "models": [MODEL]},
                       headers=ADMIN, timeout=30)
        assert r.status_code == 201 and r.json()["healthy"] is True, r.text
        yield gw
    finally:
        gw.stop()
        worker.stop()


@pytest.fixture
def api(gateway: LiveServer) -> webuiapi.WebUIApi:
    client = webuiapi.WebUIApi(baseurl=gateway.url + "/sdapi/v1")
    client.session.headers["Authorization"] = f"Bearer {CALLER_KEY}"
    return client


def _post(gateway: LiveServer, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(gateway.url + path, json=body, headers=CALLER if headers is None else headers, timeout=120)


def _audit_row(gateway: LiveServer, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        rows = httpx.get(f"{gateway.url}/audit?request_id={request_id}", headers=ADMIN, timeout=10).json()["records"]
        if rows:
            return rows[0]
        assert time.monotonic() < deadline, "no audit row"
        time.sleep(0.05)


def test_txt2img_through_the_gateway(api: webuiapi.WebUIApi, gateway: LiveServer) -> None:
    r = api.txt2img(prompt="a castle", seed=100, batch_size=2, n_iter=2, sampler_name="DPM++ 2M", **SMALL)
    assert r.info["all_seeds"] == [100, 101, 102, 103] and len(r.images) == 4
    assert r.info["sampler_name"] == "DPM++ 2M" and r.info["worker_id"]
    assert all("Seed: " + str(s) in t for s, t in zip(r.info["all_seeds"], r.info["infotexts"], strict=True))
    assert "Sampler: DPM++ 2M" in r.info["infotexts"][0]

    raw = _post(gateway, "/sdapi/v1/txt2img", {"prompt": "a castle", "seed": 5, **SMALL},
                headers={**CALLER, "X-Request-ID": "a1111-gw-1"})
    assert json.loads(raw.json()["info"])["all_seeds"] == [5]
    row = _audit_row(gateway, "a1111-gw-1")
    assert row["endpoint"] == "a1111/txt2img" and row["status"] == 200


def test_catalogue_and_options(api: webuiapi.WebUIApi, gateway: LiveServer) -> None:
    assert [m["title"] for m in api.get_sd_models()] == [MODEL]
    assert set(api.util_get_sampler_names()) == {"DDIM", "DPM++ 2M", "Euler", "Euler a"}
    assert api.util_get_current_model() == MODEL
    assert _post(gateway, "/sdapi/v1/options", {"sd_model_checkpoint": MODEL}).status_code == 200
    other = _post(gateway, "/sdapi/v1/options", {"sd_model_checkpoint": "sd_xl_refiner"})
    assert other.status_code == 400 and other.json()["error"] == "INVALID_PAYLOAD"


def test_progress_of_a_running_job(api: webuiapi.WebUIApi, gateway: LiveServer) -> None:
    assert api.get_progress()["state"]["job_count"] == 0
    done = threading.Event()

    def run() -> None:
        try:
            _post(gateway, "/sdapi/v1/txt2img", {"prompt": "slow", "seed": 3, **SMALL, "steps": 40,
                                                 "width": 256, "height": 256})
        finally:
            done.set()

    t = threading.Thread(target=run)
    t.start()
    seen: dict[str, Any] = {}
    while not done.is_set():
        p = api.get_progress()
        if p["state"]["job_count"] == 1 and p["state"]["sampling_step"] >= 1:
            seen = p
            break
    t.join(timeout=120)
    assert seen, "the job finished before any progress poll saw a denoising step"
    assert seen["state"]["sampling_steps"] == 40 and 0 < seen["progress"] <= 1
    assert api.get_progress()["state"]["job_count"] == 0


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"width": 60}, 400, "width"),
    ({"tiling": True}, 400, "tiling"),
    ({"sampler_name": "LMS"}, 400, "sampler_name"),
    ({"width": 4096, "height": 4096}, 400, "width"),  # the worker's own bounds, passed through
])
def test_errors_in_a1111_shape(gateway: LiveServer, body: dict[str, Any], status: int, field: str) -> None:
    r = _post(gateway, "/sdapi/v1/txt2img", {"prompt": "a dog", **SMALL, **body})
    err = r.json()
    assert r.status_code == status and err["error"] == err["error_code"] == "INVALID_PAYLOAD"
    assert err["detail"] and field in {f["field"] for f in err["details"]["fields"]}, err


def test_the_caller_key_is_required(gateway: LiveServer) -> None:
    r = _post(gateway, "/sdapi/v1/txt2img", {"prompt": "a dog", **SMALL}, headers={})
    assert r.status_code == 401 and r.json()["error"] == "UNAUTHORIZED" and r.json()["detail"]
