"""Cancel a non-streaming request's work when its client goes away (the worker's routes and the
gateway's alike).

A streaming response notices a gone client when a write fails or the server reports the
disconnect, and its generators are closed. A non-streaming handler writes nothing until its work
is done, so it would run on to max_tokens or its deadline for nobody. The ASGI server tells us
instead: once the body is read, `receive()` waits until the client disconnects and then returns
`http.disconnect` (worker/middleware.py's Guard replays the body, then passes `receive` through
for exactly this). Cancelling the work raises CancelledError where it waits, inside the engine's
stream or image future, which aborts the request there within one step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, TypeVar

from starlette.responses import Response

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
T = TypeVar("T")

# nginx's status for "the client closed the connection before the answer": what the access log
# and the request metrics record for such a request (the client itself reads nothing).
CLIENT_CLOSED_REQUEST = 499


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(receive: Receive, work: Coroutine[Any, Any, T]) -> T | Response:
    """`work`'s response; if the client disconnects first, `work` is cancelled and the answer is an
    empty 499. The caller must own (and close) whatever `work` holds: a task cancelled before its
    first step runs none of the coroutine's code."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        task.cancel()  # a no-op once the work is done
        await asyncio.wait((task, gone))
    if task.cancelled():
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return task.result()
