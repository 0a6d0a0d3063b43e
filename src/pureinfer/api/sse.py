"""Server-Sent Events framing shared by every streaming surface (sse-starlette underneath).

Each event is one `data: <json>` line; the stream ends with `data: [DONE]` (OpenAI's convention).
An error after the stream began cannot change the HTTP status any more, so it arrives as
`data: {"error": <the envelope>}` followed by `[DONE]`.

The response, not the event generator, ends the work (closing.py): `on_close` runs once when the
response ends in any way.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sse_starlette.sse import EventSourceResponse

from pureinfer import jsonline, metrics
from pureinfer.api.closing import ClosingResponse
from pureinfer.errors import as_pureinfer_error, envelope

log = logging.getLogger("pureinfer.sse")

DONE = "[DONE]"


async def _frames(events: AsyncIterator[dict[str, Any]], request_id: str) -> AsyncIterator[dict[str, str]]:
    try:
        async for event in events:
            yield {"data": jsonline.dumps(event)}
    except Exception as exc:  # the envelope hides unknown errors' text
        err = as_pureinfer_error(exc)
        if err is not exc:
            log.exception("error while streaming")
        metrics.ERRORS.labels(code=err.code.value).inc()
        yield {"data": jsonline.dumps({"error": envelope(err, request_id)})}
    yield {"data": DONE}


class _ClosingEventSourceResponse(ClosingResponse, EventSourceResponse):
    def __init__(self, frames: AsyncIterator[dict[str, str]], on_close: Callable[[], Awaitable[None]],
                 headers: dict[str, str]) -> None:
        super().__init__(frames, headers=headers, ping=15)
        self._on_close = on_close


def sse_response(events: AsyncIterator[dict[str, Any]], request_id: str,
                 on_close: Callable[[], Awaitable[None]]) -> EventSourceResponse:
    """`events` as SSE; `on_close` (once, in every path) releases what the stream holds."""
    return _ClosingEventSourceResponse(
        _frames(events, request_id), on_close,
        headers={"X-Request-ID": request_id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
