"""Queue fixtures: each test gets both backends, the Redis one on the real server at
127.0.0.1:6379 under a key prefix of its own (deleted afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pureinfer.queue.base import JobQueue
from pureinfer.queue.memory import MemoryQueue
from pureinfer.queue.redis_streams import RedisStreamsQueue

REDIS_URL = "redis://127.0.0.1:6379/0"


async def drop_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as redis

    r = redis.Redis.from_url(url)
    try:
        keys = [k async for k in r.scan_iter(f"{prefix}:*")]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


@pytest.fixture(params=["memory", "redis"])
async def make_queue(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., JobQueue]]:
    made: list[JobQueue] = []
    prefix = f"pi-test-{uuid.uuid4().hex[:10]}"

    def make(**kw: Any) -> JobQueue:
        q: JobQueue
        if request.param == "memory":
            q = MemoryQueue(**kw)
        else:
            q = RedisStreamsQueue(REDIS_URL, prefix=prefix, **kw)
        made.append(q)
        return q

    yield make
    for q in made:
        await q.close()
    if request.param == "redis":
        await drop_prefix(REDIS_URL, prefix)
