"""Object storage for generated files: a local directory (default) or S3-compatible (boto3)."""

from __future__ import annotations

from pureinfer.settings import WorkerSettings
from pureinfer.storage.base import ObjectStore, StoredObject, check_key, new_key

__all__ = ["ObjectStore", "StoredObject", "build_object_store", "check_key", "new_key"]


def build_object_store(settings: WorkerSettings) -> ObjectStore:
    """The store the settings name. Local files are served by the worker at `/files/{key}`."""
    if settings.storage == "s3":
        from pureinfer.storage.s3 import S3ObjectStore

        if not settings.s3_bucket:
            raise ValueError("storage=s3 needs --s3-bucket (PUREINFER_S3_BUCKET)")
        return S3ObjectStore(
            settings.s3_bucket, prefix=settings.s3_prefix, endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region, public_base_url=settings.public_base_url,
            presign_expiry_s=settings.s3_presign_expiry_s,
        )
    from pureinfer.storage.local import LocalObjectStore

    root = settings.storage_dir or settings.cache_dir / "files"
    base_url = settings.public_base_url or f"http://{settings.host}:{settings.port}"
    return LocalObjectStore(root, base_url, prefer_request_base=settings.public_base_url is None)
