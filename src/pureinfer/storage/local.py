"""Local-directory object store: the default. The worker serves the files at `/files/{key}`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pureinfer.errors import NotFound
from pureinfer.storage.base import StoredObject, check_key


class LocalObjectStore:
    kind = "local"

    def __init__(self, root: Path, base_url: str, *, prefer_request_base: bool = False) -> None:
        """`base_url`: where clients reach this worker. With `prefer_request_base` (no public base
        URL configured) the base URL of the request that made the file wins when there is one, so a
        worker bound to 0.0.0.0 still hands out URLs its clients can open."""
        self.root = Path(root).resolve()
        self.base_url = base_url.rstrip("/")
        self.prefer_request_base = prefer_request_base
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        """The file behind `key`. Only keys of our own form pass, and the result stays under root."""
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise NotFound("No such file", {"path": key})
        return path

    def url_for(self, key: str, request_base_url: str | None = None) -> str:
        base = request_base_url.rstrip("/") if request_base_url and self.prefer_request_base else self.base_url
        return f"{base}/files/{key}"

    async def put(self, key: str, data: bytes, content_type: str, *,
                  request_base_url: str | None = None) -> StoredObject:
        check_key(key)
        await asyncio.to_thread(self._write, self.root / key, data)
        return StoredObject(key=key, url=self.url_for(key, request_base_url), size=len(data),
                            content_type=content_type)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers never see half a file

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path_for(key).read_bytes)

    def describe(self) -> dict[str, str | int | None]:
        return {"kind": self.kind, "root": str(self.root), "base_url": self.base_url}
