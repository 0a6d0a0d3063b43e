"""The batch queue on its own: grouping, limits, the wait window, cancellation."""

from __future__ import annotations

import threading
import time

from pureinfer.engines.image.batcher import BatchQueue, Job


def test_compatible_jobs_share_a_batch_in_arrival_order() -> None:
    q = BatchQueue(max_batch=4, wait_s=0.0)
    a, b, c, d = Job("k", 1), Job("other", 1), Job("k", 2), Job("k", 1)
    for j in (a, b, c, d):
        q.put(j)
    assert q.next_batch() == [a, c, d]
    assert q.next_batch() == [b]
    assert q.num_jobs == 0


def test_images_never_exceed_max_batch_and_big_requests_run_alone() -> None:
    q = BatchQueue(max_batch=4, wait_s=0.0)
    big, x, y, z = Job("k", 6), Job("k", 3), Job("k", 2), Job("k", 1)
    for j in (big, x, y, z):
        q.put(j)
    assert q.next_batch() == [big]  # over the limit on its own: alone, never split
    assert q.next_batch() == [x, z]  # y (2) would make 5 > 4; z (1) fits
    assert q.next_batch() == [y]


def test_waits_for_company_until_the_window_closes() -> None:
    """A job waits the window for company: one that arrives within it joins its batch (the window
    is long and a full batch leaves at once, so a late timer thread cannot split them); a job alone
    leaves when the window closes, not before."""
    q = BatchQueue(max_batch=2, wait_s=120.0)
    first, second = Job("k", 1), Job("k", 1)
    q.put(first)
    threading.Timer(0.05, q.put, args=(second,)).start()
    assert q.next_batch() == [first, second]

    lone = BatchQueue(max_batch=4, wait_s=0.3)
    job = Job("k", 1)
    lone.put(job)
    t0 = time.monotonic()
    assert lone.next_batch() == [job]
    assert time.monotonic() - t0 >= 0.25  # waited for the window


def test_full_batch_leaves_without_waiting() -> None:
    q = BatchQueue(max_batch=2, wait_s=120.0)
    q.put(Job("k", 1))
    q.put(Job("k", 1))
    t0 = time.monotonic()
    assert len(q.next_batch() or []) == 2
    assert time.monotonic() - t0 < 60  # far below the 120 s window it would have waited


def test_cancelled_jobs_are_dropped_and_close_ends_the_consumer() -> None:
    q = BatchQueue(max_batch=4, wait_s=0.0)
    gone, kept = Job("k", 1), Job("k", 1)
    q.put(gone)
    q.put(kept)
    gone.cancelled = True
    assert q.num_images == 1
    assert q.next_batch() == [kept]
    assert q.next_batch(timeout=0.05) is None
    threading.Timer(0.05, q.close).start()
    assert q.next_batch() is None
