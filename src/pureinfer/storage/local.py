"""Local-directory object store: the default. The worker serves the files at `/files/{key}`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pureinfer.errors import NotFound
from pureinfer.storage.base import StoredObject, check_key


class LocalObjectStore:
    kind = "local"

    def __init__(self, root: Path, base_url: str) -> None:
        self.root = Path(root).resolve()
        self.base_url = base_url.rstrip("/")
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        """The file behind `key`. Only keys of our own form pass, and the result stays under root."""
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise NotFound("No such file", {"path": key})
        return path

    def url_for(self, key: str) -> str:
        return f"{self.base_url}/files/{key}"

    async def put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        check_key(key)
        await asyncio.to_thread(self._write, self.root / key, data)
        return StoredObject(key=key, url=self.url_for(key), size=len(data), content_type=content_type)

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
