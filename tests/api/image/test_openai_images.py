"""OpenAI's images API, driven by the official `openai` client against a real uvicorn server."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from pureinfer.api.image.pnginfo import read_parameters
from tests.support.image import open_gate
from tests.support.live import free_port


@pytest.fixture(scope="module")
def server_url(engine, image_settings, app_factory, tmp_path_factory) -> Iterator[str]:
    import uvicorn

    from pureinfer.api.image.serving import ImageServing
    from pureinfer.storage.local import LocalObjectStore
    port = free_port()
    store = LocalObjectStore(tmp_path_factory.mktemp("openai-files"), f"http://127.0.0.1:{port}")
    app = app_factory(ImageServing(engine, store, image_settings, open_gate(image_settings)), mount_generate=True)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def oai(server_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_url_response(oai: openai.OpenAI) -> None:
    res = oai.images.generate(prompt="a lighthouse in fog", n=2, size="64x64",
                              extra_body={"seed": 21, "steps": 3})
    assert res.created > 0 and len(res.data) == 2
    png = httpx.get(res.data[1].url)
    assert png.status_code == 200
    params = read_parameters(png.content)
    assert (params.seed, params.width, params.height, params.prompt) == (22, 64, 64, "a lighthouse in fog")


def test_b64_json_response_matches_the_seed(oai: openai.OpenAI) -> None:
    kwargs = dict(prompt="a lighthouse in fog", size="64x64", response_format="b64_json")
    a = oai.images.generate(**kwargs, extra_body={"seed": 22, "steps": 3})
    b = oai.images.generate(**kwargs, n=2, extra_body={"seed": 21, "steps": 3})
    assert a.data[0].url is None
    pix = [np.asarray(Image.open(io.BytesIO(base64.b64decode(d.b64_json)))) for d in (a.data[0], b.data[1])]
    assert np.array_equal(pix[0], pix[1])


def test_errors_reach_the_client(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.images.generate(prompt="x", size="100x64")
    assert info.value.status_code == 400
    body = info.value.response.json()
    assert body["error_code"] == "INVALID_PAYLOAD" and body["details"]["fields"][0]["field"] == "size"
    with pytest.raises(openai.BadRequestError) as info:
        oai.images.generate(prompt="x", size="big")
    assert info.value.response.json()["details"]["fields"][0]["field"] == "size"
    with pytest.raises(openai.BadRequestError):
        oai.images.generate(prompt="x", n=9, size="64x64")
    with pytest.raises(openai.BadRequestError) as info:
        oai.images.generate(prompt="castle " * 80, size="64x64")
    assert info.value.response.json()["error_code"] == "TOKEN_LIMIT_EXCEEDED"
