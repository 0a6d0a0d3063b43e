"""The in-process queue's own edge: a claim that is cancelled ends cancelled, whatever else
happens in that same moment."""

from __future__ import annotations

import asyncio

import pytest

from pureinfer.queue.memory import MemoryQueue

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_claim_cancelled_as_the_queue_changes_ends_cancelled() -> None:
    """The gateway cancels its dispatchers at shutdown while jobs may still be handed back (each
    hand-back notifies the waiting claims). A cancellation arriving with such a notification was
    dropped (Python 3.11's wait_for returned the result instead), the dispatcher looped on, and the
    gateway's lifespan never ended."""
    q = MemoryQueue()
    claim = asyncio.create_task(q.claim(["chat"], "dispatcher", block_s=30))
    for _ in range(3):
        await asyncio.sleep(0)  # the claim is now waiting on the queue's condition
    await q.enqueue("other", "image", {})  # notifies the waiting claim (not a job it takes) ...
    claim.cancel()  # ... and the cancellation lands in the same step
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(claim, timeout=10)
