"""Both backends, one behaviour: FIFO per worker type, one terminal event per job, hand-back,
re-delivery after the visibility timeout, dead letters, cancel requests."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from pureinfer.queue.base import Event, JobQueue

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def drain_events(q: JobQueue, want: int, timeout_s: float = 10) -> list[Event]:
    out: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        for ev in await q.events("gw", block_s=0.2):
            await q.ack_event(ev)
            out.append(ev)
    return out


async def test_fifo_per_worker_type_and_one_result_per_job(make_queue: Callable[..., JobQueue]) -> None:
    q = make_queue()
    for i in range(5):
        await q.enqueue(f"c{i}", "chat", {"n": i})
    await q.enqueue("i0", "image", {"n": 0})
    assert await q.depth("chat") == 5
    got = []
    for _ in range(5):
        d = await q.claim(["chat"], "w1", block_s=1)
        assert d is not None and d.attempt == 1
        got.append(d)
    assert [d.job_id for d in got] == [f"c{i}" for i in range(5)]
    assert await q.claim(["chat"], "w1", block_s=0.05) is None
    for d in got:
        assert await q.complete(d, "succeeded", {"result": d.work["n"]}) is True
    events = await drain_events(q, 5)
    assert sorted((e.job_id, e.kind, e.data["result"]) for e in events) == \
        [(f"c{i}", "succeeded", i) for i in range(5)]
    image = await q.claim(["chat", "image"], "w1", block_s=1)
    assert image is not None and (image.job_id, image.worker_type) == ("i0", "image")


async def test_a_job_completed_twice_is_recorded_once(make_queue: Callable[..., JobQueue]) -> None:
    q = make_queue(visibility_timeout_s=0.2)
    await q.enqueue("j", "chat", {})
    first = await q.claim(["chat"], "slow", block_s=1)
    assert first is not None
    # The slow worker stops heartbeating: after the visibility timeout another one takes it over.
    second = None
    deadline = time.monotonic() + 60  # a bound on waiting, not a speed goal
    while second is None and time.monotonic() < deadline:
        second = await q.claim(["chat"], "fast", block_s=0.1)
    assert second is not None and second.job_id == "j" and second.attempt == 2
    assert await q.complete(second, "succeeded", {"by": "fast"}) is True
    assert await q.complete(first, "succeeded", {"by": "slow"}) is False
    events = await drain_events(q, 2, timeout_s=1)
    assert [(e.kind, e.data) for e in events] == [("succeeded", {"by": "fast"})]


async def test_heartbeats_keep_a_job_from_redelivery(make_queue: Callable[..., JobQueue]) -> None:
    q = make_queue(visibility_timeout_s=0.5)
    await q.enqueue("j", "chat", {})
    d = await q.claim(["chat"], "w1", block_s=1)
    assert d is not None
    for _ in range(6):  # 3 visibility timeouts in all, each wait shorter than one
        await q.heartbeat(d, "w1")
        assert await q.claim(["chat"], "w2", block_s=0.25) is None


async def test_hand_back_redelivers_without_counting_an_attempt(make_queue: Callable[..., JobQueue]) -> None:
    q = make_queue()
    await q.enqueue("j", "chat", {"x": 1})
    d = await q.claim(["chat"], "w1", block_s=1)
    assert d is not None
    await q.release(d)
    again = await q.claim(["chat"], "w2", block_s=1)
    assert again is not None and (again.job_id, again.attempt, again.work) == ("j", 1, {"x": 1})
    assert [e.kind for e in await drain_events(q, 1)] == ["requeued"]


async def test_a_poison_job_ends_in_the_dead_letters(make_queue: Callable[..., JobQueue]) -> None:
    q = make_queue(visibility_timeout_s=0.1, max_attempts=2)
    await q.enqueue("poison", "chat", {"p": 1})
    attempts = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not await q.dead_letters("chat"):
        d = await q.claim(["chat"], f"w{len(attempts)}", block_s=0.1)
        if d is not None:
            attempts.append(d.attempt)  # and the worker "dies": no heartbeat, no completion
    assert attempts == [1, 2]
    dead = await q.dead_letters("chat")
    assert [(x["job_id"], x["work"]) for x in dead] == [("poison", {"p": 1})]
    events = await drain_events(q, 1)
    assert [(e.job_id, e.kind, e.data["dead_letter"]) for e in events] == [("poison", "failed", True)]


async def test_cancel_requests_are_seen_by_any_client(make_queue: Callable[..., JobQueue]) -> None:
    q = make_queue()
    assert not await q.cancel_requested("j")
    await q.request_cancel("j")
    assert await q.cancel_requested("j")
