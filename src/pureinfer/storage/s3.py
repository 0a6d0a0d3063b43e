"""S3-compatible object store through boto3 (AWS, MinIO, R2, ...).

Credentials come from boto3's usual chain (environment, config files, instance roles); they are
never settings of ours. URLs are presigned GETs with an expiry, or `public_base_url/<object key>`
when the bucket is served publicly (a CDN in front of it).
"""

from __future__ import annotations

import asyncio
from typing import Any

from pureinfer.errors import NotFound
from pureinfer.storage.base import StoredObject, check_key


class S3ObjectStore:
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        public_base_url: str | None = None,
        presign_expiry_s: int = 3600,
        client: Any = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self.presign_expiry_s = presign_expiry_s
        # SigV4 presigning (what R2, MinIO and newer AWS regions accept); path-style addressing for
        # custom endpoints, which rarely have per-bucket DNS names.
        config = Config(signature_version="s3v4",
                        s3={"addressing_style": "path" if endpoint_url else "auto"})
        self._client = client or boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def url_for(self, key: str) -> str:
        if self.public_base_url:
            return f"{self.public_base_url}/{self.object_key(key)}"
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=self.presign_expiry_s,
        )

    async def put(self, key: str, data: bytes, content_type: str, *,
                  request_base_url: str | None = None) -> StoredObject:
        await asyncio.to_thread(
            self._client.put_object, Bucket=self.bucket, Key=self.object_key(key), Body=data,
            ContentType=content_type,
        )
        return StoredObject(key=key, url=self.url_for(key), size=len(data), content_type=content_type)

    async def get(self, key: str) -> bytes:
        object_key = self.object_key(key)

        def _get() -> bytes:
            try:
                return self._client.get_object(Bucket=self.bucket, Key=object_key)["Body"].read()
            except self._client.exceptions.NoSuchKey:
                raise NotFound("No such file", {"path": key}) from None

        return await asyncio.to_thread(_get)

    def describe(self) -> dict[str, str | int | None]:
        return {
            "kind": self.kind, "bucket": self.bucket, "prefix": self.prefix, "endpoint_url": self.endpoint_url,
            "url_mode": "public" if self.public_base_url else f"presigned ({self.presign_expiry_s}s)",
        }
