"""Image fixtures (a plugin of the root conftest): the tiny SDXL pipeline (built once, offline), one running engine,
a local store, an app factory with the image router, and moto's S3 server on a loopback port."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.live import free_port
from tests.support.worker import make_settings


@pytest.fixture(scope="session")
def image_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny SDXL folder, built as `--demo` builds it (so a demo-models folder can reuse it)."""
    from pureinfer.engines.demo.build import ensure_demo_models

    return ensure_demo_models(tmp_path_factory.mktemp("demo-models"), text=False, image=True) / "image"


def image_worker_settings(model_dir: Path, tmp: Path, **overrides: Any) -> Any:
    """An image worker's settings on the tiny SDXL pipeline in `model_dir`, files under `tmp`."""
    values: dict[str, Any] = dict(
        demo=False, role="image", image_model=str(model_dir), device="cpu", image_min_size=64,
        image_max_size=512, storage_dir=tmp / "files", image_batch_wait_ms=150, image_max_batch=4,
    )
    values.update(overrides)
    return make_settings(tmp / "cache", **values)


@pytest.fixture(scope="session")
def image_settings(image_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return image_worker_settings(image_model_dir, tmp_path_factory.mktemp("image-worker"))


@pytest.fixture(scope="session")
def image_engine(image_settings) -> Iterator:
    """One engine for the session (loading takes a fraction of a second; its thread is shared)."""
    from pureinfer.engines.image.sdxl import load_image_engine

    eng = load_image_engine(image_settings)
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.shutdown())


@pytest.fixture(scope="session")
def local_store(image_settings):
    from pureinfer.storage import build_object_store

    return build_object_store(image_settings.model_copy(update={"public_base_url": "http://testserver"}))


def open_gate(settings: Any) -> Any:
    """An admission gate that is always ready, with the worker's limits for `settings`."""
    from pureinfer.api.admission import Admission

    return Admission.for_settings(settings, is_ready=lambda: True)


@pytest.fixture(scope="session")
def image_serving(image_engine, local_store, image_settings):
    from pureinfer.api.image.serving import ImageServing

    return ImageServing(image_engine, local_store, image_settings, open_gate(image_settings))


def build_app(serving, *, mount_generate: bool = True):
    from fastapi import FastAPI

    from pureinfer.api.image.router import build_image_router
    from pureinfer.http_errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_image_router(serving, mount_generate=mount_generate))
    return app


@pytest.fixture(scope="session")
def app_factory():
    return build_app


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 in server mode on 127.0.0.1 (a real HTTP endpoint for boto3 and for URL fetches)."""
    from moto.server import ThreadedMotoServer

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ[key] = value
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    import boto3

    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="images")
    yield url
    server.stop()
