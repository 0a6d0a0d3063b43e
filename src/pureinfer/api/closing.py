"""The streaming responses' one rule for releasing what a stream holds (sse.py, ndjson.py).

The response, not the event generator, ends the work: `on_close` runs when the response ends in
any way, also when it is cancelled before the generator's first step (a client that left at
once), where no code of the generator would ever run and its `finally` could release nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


class ClosingResponse(Response):
    """Mixed in before a streaming response class, whose `__init__` sets `_on_close`; it runs
    once, after that class has sent (or failed to send) the response."""

    _on_close: Callable[[], Awaitable[None]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()
