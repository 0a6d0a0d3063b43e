"""Both object stores against real backends: a directory and moto's S3 server over HTTP."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from pureinfer.errors import NotFound
from pureinfer.settings import WorkerSettings
from pureinfer.storage import ObjectStore, build_object_store, check_key, new_key
from pureinfer.storage.local import LocalObjectStore
from pureinfer.storage.s3 import S3ObjectStore


def test_keys_are_unguessable_and_strict() -> None:
    a, b = new_key("png"), new_key("png")
    assert a != b and len(a.split("/")[1]) == len("0123456789abcdef0123456789abcdef.png")
    stem = a.split("/")[1].removesuffix(".png")
    assert new_key("webp", stem=stem, suffix="thumb").endswith(f"{stem}-thumb.webp")
    for bad in ("../etc/passwd", "/etc/passwd", a + "/..", "2026-01-01/../../x.png", a.upper(),
                "2026-01-01/abc.png", a.replace(".png", ".sh"), a + "\x00", "2026-01-01\\" + a.split("/")[1]):
        with pytest.raises(NotFound):
            check_key(bad)


async def test_local_store(tmp_path: Path) -> None:
    store = build_object_store(WorkerSettings(storage_dir=tmp_path, port=9123))
    assert isinstance(store, LocalObjectStore) and isinstance(store, ObjectStore)
    key = new_key("png")
    obj = await store.put(key, b"\x89PNG data", "image/png")
    assert obj.url == f"http://127.0.0.1:9123/files/{key}" and obj.size == 9
    assert (tmp_path / key).read_bytes() == b"\x89PNG data"
    assert await store.get(key) == b"\x89PNG data"
    assert not list(tmp_path.rglob("*.part"))
    with pytest.raises(NotFound):
        await store.get(new_key("png"))
    (tmp_path / "secret.png").write_bytes(b"x")
    with pytest.raises(NotFound):
        store.path_for("../secret.png")


async def test_local_store_default_dir_and_public_url(tmp_path: Path) -> None:
    store = build_object_store(WorkerSettings(cache_dir=tmp_path, public_base_url="https://img.example.com/"))
    assert store.describe()["root"] == str((tmp_path / "files").resolve())
    obj = await store.put(new_key("webp"), b"w", "image/webp", request_base_url="http://10.0.0.5:8000/")
    assert obj.url.startswith("https://img.example.com/files/")  # the configured base wins


async def test_local_store_without_public_url_uses_the_request_base(tmp_path: Path) -> None:
    store = build_object_store(WorkerSettings(cache_dir=tmp_path, host="0.0.0.0", insecure=True))
    key = new_key("png")
    assert (await store.put(key, b"p", "image/png", request_base_url="http://10.0.0.5:8000/")).url == \
        f"http://10.0.0.5:8000/files/{key}"
    assert (await store.put(key, b"p", "image/png")).url == f"http://0.0.0.0:8000/files/{key}"  # no request


async def test_s3_store_presigned(s3_server: str) -> None:
    store = build_object_store(WorkerSettings(storage="s3", s3_bucket="images", s3_prefix="gen/",
                                              s3_endpoint_url=s3_server, s3_region="us-east-1",
                                              s3_presign_expiry_s=600))
    assert isinstance(store, S3ObjectStore)
    key = new_key("png")
    obj = await store.put(key, b"\x89PNG s3", "image/png")
    assert obj.url.startswith(f"{s3_server}/images/gen/{key}?")
    assert "X-Amz-Expires=600" in obj.url and "X-Amz-Signature=" in obj.url
    fetched = httpx.get(obj.url)
    assert fetched.status_code == 200 and fetched.content == b"\x89PNG s3"
    assert fetched.headers["content-type"] == "image/png"
    assert await store.get(key) == b"\x89PNG s3"
    with pytest.raises(NotFound):
        await store.get(new_key("png"))
    assert store.describe()["url_mode"] == "presigned (600s)"


async def test_s3_store_public_base_url(s3_server: str) -> None:
    import json

    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    s3.create_bucket(Bucket="public")
    s3.put_bucket_policy(Bucket="public", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::public/*"}]}))
    store = S3ObjectStore("public", endpoint_url=s3_server, region="us-east-1",
                          public_base_url=f"{s3_server}/public")
    key = new_key("png")
    obj = await store.put(key, b"public", "image/png")
    assert obj.url == f"{s3_server}/public/{key}"
    assert httpx.get(obj.url).content == b"public"  # anonymous GET, as a CDN would
