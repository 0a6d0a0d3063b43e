"""Engine thread -> one asyncio consumer: the output of one request, coalesced.

The engine thread never waits on a consumer: `push` appends under a lock and wakes the
consumer's loop at most once until it reads (`call_soon_threadsafe`). Whatever the consumer has
not read yet is merged into one delta, so a slow consumer costs at most its own output text.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from pureinfer.engines.base import TextDelta


class Channel:
    """Engine thread -> one consumer. Coalesces unread output, so memory stays bounded."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._text: list[str] = []
        self._ids: list[int] = []
        self._finish: Any = None
        self._error: BaseException | None = None
        self._closed = False
        self._notified = False
        self.event = asyncio.Event()

    def push(self, text: str, token_id: int | None, finish: Any = None) -> None:
        with self._lock:
            if self._closed:
                return
            if text:
                self._text.append(text)
            if token_id is not None:
                self._ids.append(token_id)
            if finish is not None:
                self._finish = finish
                self._closed = True
            self._notify_locked()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if self._closed:
                return
            self._error = error
            self._closed = True
            self._notify_locked()

    def _notify_locked(self) -> None:
        if self._notified:
            return
        self._notified = True
        with contextlib.suppress(RuntimeError):  # the consumer's loop is gone: nobody listens
            self._loop.call_soon_threadsafe(self.event.set)

    def take(self) -> tuple[TextDelta | None, BaseException | None, bool]:
        """(delta or None, error or None, finished) — called on the consumer's loop."""
        self.event.clear()
        with self._lock:
            self._notified = False
            delta = None
            if self._text or self._ids or self._finish is not None:
                delta = TextDelta("".join(self._text), self._ids, self._finish)
                self._text, self._ids = [], []
            return delta, self._error, self._closed
