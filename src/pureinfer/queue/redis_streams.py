"""Redis Streams backend (redis-py asyncio): the pattern cog's queue workers used, with Redis's
own delivery machinery rather than a home-made one.

Keys (all under `prefix`, so tests and deployments can share one server):

    {p}:jobs:{worker_type}   a stream per worker type; group "workers"; FIFO per stream
    {p}:dead:{worker_type}   dead letters: jobs delivered more than max_attempts times
    {p}:events               started / progress / terminal events; group "gateways"
    {p}:result:{job_id}      set once (SET NX) by the first terminal event of a job
    {p}:cancel:{job_id}      a cancel request any gateway sets and the running worker watches

Delivery: a worker reads new entries with XREADGROUP; while it runs one it heartbeats by
re-claiming its own entry (XCLAIM ... JUSTID resets the idle time); an entry idle for the
visibility timeout belonged to a dead worker and is taken over with XAUTOCLAIM, which counts the
delivery. Completion is one Lua script, so it is atomic: SET NX the result key, XADD the
terminal event only when that SET won (a re-delivered job that ran twice is recorded once), then
XACK and XDEL the entry: acknowledged only after the result is stored. Hand-back (SIGTERM)
re-adds the job at the stream's end with its delivery count and acknowledges the original.

Durability is Redis's: run it with `appendonly yes` so a restart keeps the streams. Every
method survives a restart: a lost connection is retried with backoff (redis-py reconnects),
and a group missing after a restart without persistence is created again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pureinfer.queue.base import TERMINAL_EVENTS, Delivery, Event

log = logging.getLogger("pureinfer.queue")
T = TypeVar("T")
WORKERS_GROUP = "workers"
GATEWAYS_GROUP = "gateways"
RESULT_TTL_S = 7 * 24 * 3600
CANCEL_TTL_S = 24 * 3600
EVENTS_MAXLEN = 1_000_000

# KEYS: result, events, jobs stream, dead stream. ARGV: job_id, kind, data, ttl, group, entry id,
# dead-letter fields as JSON ("" for none).
_COMPLETE = """
if ARGV[7] ~= '' then
  redis.call('XADD', KEYS[4], '*', 'job_id', ARGV[1], 'entry', ARGV[7])
end
local first = redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[4])
if first then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', '1000000', '*', 'job_id', ARGV[1], 'kind', ARGV[2], 'data', ARGV[3])
end
redis.call('XACK', KEYS[3], ARGV[5], ARGV[6])
redis.call('XDEL', KEYS[3], ARGV[6])
if first then return 1 else return 0 end
"""

_RETRYABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class RedisStreamsQueue:
    def __init__(self, url: str, *, prefix: str = "pureinfer", visibility_timeout_s: float = 30.0,
                 max_attempts: int = 3, retry_for_s: float = 30.0) -> None:
        self.url = url
        self.prefix = prefix
        self.visibility_timeout_s = visibility_timeout_s
        self.max_attempts = max_attempts
        self.retry_for_s = retry_for_s  # how long one call retries a lost connection
        self.redis: redis.Redis = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2.0,
                                                       health_check_interval=5)
        self._complete = self.redis.register_script(_COMPLETE)
        self._groups: set[tuple[str, str]] = set()
        self._buffered: list[Delivery] = []  # read together with another stream's entry

    # -- keys -----------------------------------------------------------------------------------
    def jobs_key(self, worker_type: str) -> str:
        return f"{self.prefix}:jobs:{worker_type}"

    def dead_key(self, worker_type: str) -> str:
        return f"{self.prefix}:dead:{worker_type}"

    @property
    def events_key(self) -> str:
        return f"{self.prefix}:events"

    # -- resilience -----------------------------------------------------------------------------
    async def _retry(self, op: Callable[[], Awaitable[T]], retry_for_s: float | None = None) -> T:
        """Run `op`, retrying a lost connection (Redis restarting) with backoff and jitter, and
        re-creating consumer groups a restart without persistence lost."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.retry_for_s if retry_for_s is None else retry_for_s)
        delay = 0.05
        while True:
            try:
                return await op()
            except ResponseError as exc:
                # NOGROUP: a restart without persistence lost the group; UNBLOCKED: the stream was
                # deleted under a blocked read. Either way: create it again.
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                self._groups.clear()
                if loop.time() >= deadline:
                    raise
            except _RETRYABLE:
                if loop.time() >= deadline:
                    raise
                log.warning("redis unreachable; retrying", extra={"event": "queue_reconnect", "url": self._safe_url})
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 1.0)

    @property
    def _safe_url(self) -> str:
        return self.url.split("@")[-1]

    async def _group(self, stream: str, group: str) -> None:
        if (stream, group) in self._groups:
            return
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((stream, group))

    # -- gateway side: work in ------------------------------------------------------------------
    async def enqueue(self, job_id: str, worker_type: str, work: dict[str, Any], *, deliveries: int = 0,
                      retry_for_s: float | None = None) -> None:
        stream = self.jobs_key(worker_type)

        async def op() -> None:
            await self._group(stream, WORKERS_GROUP)
            await self.redis.xadd(stream, {"job_id": job_id, "work": json.dumps(work), "deliveries": deliveries})
        await self._retry(op, retry_for_s)

    # -- worker side ----------------------------------------------------------------------------
    def _delivery(self, worker_type: str, entry_id: str, fields: dict[str, str], times: int) -> Delivery:
        return Delivery(fields["job_id"], worker_type, json.loads(fields["work"]),
                        int(fields.get("deliveries", 0)) + times, entry_id)

    async def _times_delivered(self, stream: str, entry_id: str) -> int:
        rows = await self.redis.xpending_range(stream, WORKERS_GROUP, min=entry_id, max=entry_id, count=1)
        return int(rows[0]["times_delivered"]) if rows else 1

    async def _take_over(self, worker_type: str, consumer: str) -> Delivery | None:
        """The oldest entry idle past the visibility timeout (its worker died), or None."""
        stream = self.jobs_key(worker_type)
        ms = int(self.visibility_timeout_s * 1000)
        _next, entries, *_ = await self.redis.xautoclaim(stream, WORKERS_GROUP, consumer, ms, "0-0", count=1)
        for entry_id, fields in entries:
            if fields:  # None for an entry deleted meanwhile
                times = await self._times_delivered(stream, entry_id)
                return self._delivery(worker_type, entry_id, fields, times)
        return None

    async def claim(self, worker_types: Sequence[str], consumer: str, block_s: float) -> Delivery | None:
        while self._buffered:
            d = self._buffered.pop(0)
            if d.attempt <= self.max_attempts:
                return d
            await self._dead_letter(d)

        async def op() -> Delivery | None:
            for wt in worker_types:
                await self._group(self.jobs_key(wt), WORKERS_GROUP)
            for wt in worker_types:
                while (d := await self._take_over(wt, consumer)) is not None:
                    if d.attempt <= self.max_attempts:
                        return d
                    await self._dead_letter(d)
            streams = {self.jobs_key(wt): ">" for wt in worker_types}
            got = await self.redis.xreadgroup(WORKERS_GROUP, consumer, streams, count=1,
                                              block=max(1, int(block_s * 1000)))
            found: list[Delivery] = []
            for stream, entries in got or []:
                wt = stream.removeprefix(f"{self.prefix}:jobs:")
                found += [self._delivery(wt, eid, f, 1) for eid, f in entries if f]
            if not found:
                return None
            self._buffered += found[1:]  # another stream's entry read in the same call: next
            return found[0]
        d = await self._retry(op)
        if d is not None and d.attempt > self.max_attempts:
            await self._dead_letter(d)
            return None
        return d

    async def _dead_letter(self, d: Delivery) -> None:
        log.warning("job dead-lettered", extra={"event": "job_dead_letter", "job_id": d.job_id,
                                                "deliveries": d.attempt - 1})
        entry = json.dumps({"work": d.work, "deliveries": d.attempt - 1, "worker_type": d.worker_type})
        data = {"dead_letter": True, "attempts": d.attempt - 1,
                "error": {"success": False, "error": f"The job failed on {d.attempt - 1} deliveries "
                                                     "(its workers died or never finished it)",
                          "error_code": "INTERNAL_ERROR", "details": {"attempts": d.attempt - 1},
                          "suggested_action": "Inspect the dead letters; submit the job again once fixed"}}
        await self._run_complete(d, "failed", data, dead_entry=entry)

    async def _run_complete(self, d: Delivery, kind: str, data: dict[str, Any], dead_entry: str = "") -> bool:
        keys = [f"{self.prefix}:result:{d.job_id}", self.events_key, self.jobs_key(d.worker_type),
                self.dead_key(d.worker_type)]
        args = [d.job_id, kind, json.dumps(data), RESULT_TTL_S, WORKERS_GROUP, d.ref, dead_entry]
        return bool(await self._retry(lambda: self._complete(keys=keys, args=args)))

    async def heartbeat(self, delivery: Delivery, consumer: str) -> None:
        async def op() -> None:
            await self.redis.xclaim(self.jobs_key(delivery.worker_type), WORKERS_GROUP, consumer, 0,
                                    [delivery.ref], justid=True)
        await self._retry(op)

    async def complete(self, delivery: Delivery, kind: str, data: dict[str, Any]) -> bool:
        assert kind in TERMINAL_EVENTS, kind
        return await self._run_complete(delivery, kind, data)

    async def release(self, delivery: Delivery, delay_s: float = 0.0) -> None:
        """Hand the job back to its stream at once. `delay_s` is the memory queue's (its
        dispatcher's backoff while no worker is healthy); queue-mode workers claim only what
        they can run, so on Redis it is not used and not kept."""
        stream = self.jobs_key(delivery.worker_type)

        async def op() -> None:
            async with self.redis.pipeline(transaction=True) as p:
                p.xadd(stream, {"job_id": delivery.job_id, "work": json.dumps(delivery.work),
                                "deliveries": delivery.attempt - 1})
                p.xadd(self.events_key, {"job_id": delivery.job_id, "kind": "requeued", "data": "{}"})
                p.xack(stream, WORKERS_GROUP, delivery.ref)
                p.xdel(stream, delivery.ref)
                await p.execute()
        await self._retry(op)

    async def publish(self, event: Event) -> None:
        async def op() -> None:
            await self.redis.xadd(self.events_key, {"job_id": event.job_id, "kind": event.kind,
                                                    "data": json.dumps(event.data)},
                                  maxlen=EVENTS_MAXLEN, approximate=True)
        await self._retry(op)

    # -- gateway side: events out ---------------------------------------------------------------
    async def events(self, consumer: str, block_s: float, count: int = 100) -> list[Event]:
        async def op() -> list[Event]:
            await self._group(self.events_key, GATEWAYS_GROUP)
            # Events a gateway read and never acknowledged (it died) are taken over first.
            _n, stale, *_ = await self.redis.xautoclaim(self.events_key, GATEWAYS_GROUP, consumer,
                                                        int(self.visibility_timeout_s * 1000), "0-0", count=count)
            entries = [(i, f) for i, f in stale if f]
            if not entries:
                got = await self.redis.xreadgroup(GATEWAYS_GROUP, consumer, {self.events_key: ">"}, count=count,
                                                  block=max(1, int(block_s * 1000)))
                entries = [(i, f) for _s, es in got or [] for i, f in es if f]
            return [Event(f["job_id"], f["kind"], json.loads(f.get("data") or "{}"), i) for i, f in entries]
        return await self._retry(op)

    async def ack_event(self, event: Event) -> None:
        async def op() -> None:
            async with self.redis.pipeline(transaction=True) as p:
                p.xack(self.events_key, GATEWAYS_GROUP, event.ref)
                p.xdel(self.events_key, event.ref)
                await p.execute()
        await self._retry(op)

    # -- cancellation, inspection ---------------------------------------------------------------
    async def request_cancel(self, job_id: str) -> None:
        await self._retry(lambda: self.redis.set(f"{self.prefix}:cancel:{job_id}", "1", ex=CANCEL_TTL_S))

    async def cancel_requested(self, job_id: str) -> bool:
        return bool(await self._retry(lambda: self.redis.exists(f"{self.prefix}:cancel:{job_id}")))

    async def depth(self, worker_type: str) -> int:
        """Entries on the stream: waiting and running (finished ones are deleted)."""
        return int(await self._retry(lambda: self.redis.xlen(self.jobs_key(worker_type)), 2.0))

    async def dead_letters(self, worker_type: str) -> list[dict[str, Any]]:
        rows = await self._retry(lambda: self.redis.xrange(self.dead_key(worker_type)))
        return [{"job_id": f["job_id"], **json.loads(f["entry"])} for _i, f in rows]

    async def close(self) -> None:
        await self.redis.aclose()
