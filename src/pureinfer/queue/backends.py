"""Choosing a queue backend by URL: the one place that knows every backend, so the protocol
(base.py) and the backends (memory.py, redis_streams.py) import only downwards."""

from __future__ import annotations

from pureinfer.queue.base import JobQueue


def open_queue(url: str, *, prefix: str = "pureinfer", visibility_timeout_s: float = 30.0,
               max_attempts: int = 3) -> JobQueue:
    """`memory` or `redis://...` (`rediss://` too)."""
    if url == "memory":
        from pureinfer.queue.memory import MemoryQueue

        return MemoryQueue(visibility_timeout_s=visibility_timeout_s, max_attempts=max_attempts)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from pureinfer.queue.redis_streams import RedisStreamsQueue

        return RedisStreamsQueue(url, prefix=prefix, visibility_timeout_s=visibility_timeout_s,
                                 max_attempts=max_attempts)
    raise ValueError(f"queue must be 'memory' or a redis:// URL, not {url!r}")
