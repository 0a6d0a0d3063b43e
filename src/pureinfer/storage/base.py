"""What the image surface expects of a place to put generated files.

A store chooses every object's name itself (random, 128 bits: unguessable), so callers can never
address a file they were not given, and answers with a URL the client can fetch.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from pureinfer.errors import NotFound

# Keys we create: "<yyyy-mm-dd>/<32 hex>[-suffix].<ext>"; anything else is refused before any
# filesystem or bucket access, which makes path traversal impossible by construction.
KEY_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}/[0-9a-f]{32}(-[a-z0-9]{1,16})?\.(png|webp|jpg)$")


def new_key(ext: str, *, stem: str | None = None, suffix: str | None = None) -> str:
    """A fresh unguessable key; `stem` lets related files (image + thumbnail) share a name."""
    stem = stem or secrets.token_hex(16)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    return f"{day}/{stem}{'-' + suffix if suffix else ''}.{ext}"


def check_key(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise NotFound("No such file", {"path": key[:200]})
    return key


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    url: str
    size: int
    content_type: str


@runtime_checkable
class ObjectStore(Protocol):
    kind: str  # "local" | "s3"

    async def put(self, key: str, data: bytes, content_type: str, *,
                  request_base_url: str | None = None) -> StoredObject:
        """Store `data` under `key` (from `new_key`) and return where clients can fetch it.

        `request_base_url` is the base URL the client used to reach us; a local store without a
        configured public base URL answers with URLs on it (S3 ignores it).
        """
        ...

    async def get(self, key: str) -> bytes:
        """The stored bytes; NotFound for unknown or malformed keys."""
        ...

    def describe(self) -> dict[str, str | int | None]:
        """Non-secret configuration, for /worker/info."""
        ...
