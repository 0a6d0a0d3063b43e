"""Server-Sent Events framing shared by every streaming surface (sse-starlette underneath).

Each event is one `data: <json>` line; the stream ends with `data: [DONE]` (OpenAI's convention).
An error after the stream began cannot change the HTTP status any more, so it arrives as
`data: {"error": <the envelope>}` followed by `[DONE]`. A client that disconnects cancels the
producing generator, whose `finally` aborts the request in the engine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette.sse import EventSourceResponse

from pureinfer import metrics
from pureinfer.errors import as_pureinfer_error, envelope

log = logging.getLogger("pureinfer.sse")

DONE = "[DONE]"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


async def _frames(events: AsyncIterator[dict[str, Any]], request_id: str) -> AsyncIterator[dict[str, str]]:
    try:
        async for event in events:
            yield {"data": _dumps(event)}
    except Exception as exc:  # the envelope hides unknown errors' text
        err = as_pureinfer_error(exc)
        if err is not exc:
            log.exception("error while streaming")
        metrics.ERRORS.labels(code=err.code.value).inc()
        yield {"data": _dumps({"error": envelope(err, request_id)})}
    yield {"data": DONE}


def sse_response(events: AsyncIterator[dict[str, Any]], request_id: str) -> EventSourceResponse:
    return EventSourceResponse(
        _frames(events, request_id),
        headers={"X-Request-ID": request_id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        ping=15,
    )
