"""Newline-delimited JSON streaming (Ollama's way): one JSON object per line, no terminator.

An error after the stream began cannot change the HTTP status any more, so it arrives as one last
line `{"error": <message>, ...}` (Ollama's own clients raise it), with our code fields beside it.
As with `sse.py`, the response and not the generator ends the work (closing.py): `on_close` runs
once when the response ends in any way, also when it is cancelled before the generator's first step.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import StreamingResponse

from pureinfer import jsonline, metrics
from pureinfer.api.closing import ClosingResponse
from pureinfer.errors import as_pureinfer_error, envelope

log = logging.getLogger("pureinfer.ndjson")

MEDIA_TYPE = "application/x-ndjson"


def line(obj: Any) -> bytes:
    return jsonline.dumps(obj).encode() + b"\n"


async def _lines(events: AsyncIterator[dict[str, Any]], request_id: str) -> AsyncIterator[bytes]:
    try:
        async for event in events:
            yield line(event)
    except Exception as exc:  # the envelope hides unknown errors' text
        err = as_pureinfer_error(exc)
        if err is not exc:
            log.exception("error while streaming")
        metrics.ERRORS.labels(code=err.code.value).inc()
        yield line(envelope(err, request_id))  # its "error" is the message, as Ollama's is


class _ClosingStreamingResponse(ClosingResponse, StreamingResponse):
    def __init__(self, lines: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]],
                 headers: dict[str, str]) -> None:
        super().__init__(lines, media_type=MEDIA_TYPE, headers=headers)
        self._on_close = on_close


def ndjson_response(events: AsyncIterator[dict[str, Any]], request_id: str,
                    on_close: Callable[[], Awaitable[None]]) -> StreamingResponse:
    """`events` as NDJSON; `on_close` (once, in every path) releases what the stream holds."""
    return _ClosingStreamingResponse(_lines(events, request_id), on_close,
                                     headers={"X-Request-ID": request_id, "Cache-Control": "no-cache"})
