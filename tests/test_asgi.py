"""The shared bounded body read: never holds more than the limit, refuses a declared length over
it before reading, and replays what it read."""

from __future__ import annotations

import pytest

from pureinfer.asgi import read_body, replaying
from pureinfer.errors import PayloadTooLarge


async def test_read_body_is_bounded_and_replayed():
    sent = 0

    async def endless():
        nonlocal sent
        sent += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    with pytest.raises(PayloadTooLarge):
        await read_body({"headers": []}, endless, 10_000)
    assert sent == 11  # stopped at the first chunk past the limit

    async def never():
        raise AssertionError("a declared length over the limit is refused before reading")

    with pytest.raises(PayloadTooLarge) as info:
        await read_body({"headers": [(b"content-length", b"10001")]}, never, 10_000)
    assert info.value.http_status == 413 and info.value.details["fields"][0]["field"] == "body"

    parts = iter([{"type": "http.request", "body": b"ab", "more_body": True},
                  {"type": "http.request", "body": b"c", "more_body": False},
                  {"type": "http.disconnect"}])

    async def receive():
        return next(parts)
    # A Content-Length of "¹" (latin-1 0xB9: str.isdigit() is true, int() fails) is no number.
    body = await read_body({"headers": [(b"content-length", b"\xb9")]}, receive, 10)
    again = replaying(body, receive)
    assert body == b"abc" and (await again())["body"] == b"abc" and (await again())["type"] == "http.disconnect"
