"""Pure ASGI pieces shared by the worker and the gateway (Starlette's advice: no
BaseHTTPMiddleware, streaming stays intact).

The request-body limit: `read_body()` reads a body bounded by the limit (a declared
Content-Length over it is refused before a byte is read; a body that grows past it is refused as
soon as it does), and `replaying()` hands the bytes read to the app as if they came from the
client. `BodyLimit` is the middleware made of the two; the worker's `Guard` uses them too, since
it needs the exact bytes for the signature. Too large: 413 INVALID_PAYLOAD naming `body`.
Request headers are bounded the same way (`MAX_HEADER_BYTES`, 431 INVALID_PAYLOAD naming
`headers`): uvicorn's default parser takes headers of any size and hands them all to the app.

`ErrorBoundary` is where an exception no handler knew ends: the 500 envelope (INTERNAL_ERROR, the
request id) when no response has started, the traceback in our log once, and nothing re-raised.
Starlette's own last resort (ServerErrorMiddleware) answers 500 and then re-raises to the server,
which logs it again as plain text and closes the keep-alive connection under the client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pureinfer.errors import InvalidPayload, PayloadTooLarge, PureInferError
from pureinfer.http_errors import ErrorShapes, error_response

log = logging.getLogger("pureinfer.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def header(scope: Scope, name: bytes) -> str | None:
    """One request header (`name` lower-case), decoded as latin-1 as HTTP/1.1 sends it."""
    return next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == name), None)


# Names and values of all request headers together; nginx's default buffers hold 32 KiB too.
MAX_HEADER_BYTES = 32_768


def headers_too_large(scope: Scope, max_bytes: int = MAX_HEADER_BYTES) -> InvalidPayload | None:
    size = sum(len(k) + len(v) for k, v in scope.get("headers", []))
    if size <= max_bytes:
        return None
    err = InvalidPayload(f"Request headers exceed {max_bytes} bytes",
                         {"fields": [{"field": "headers", "message": f"larger than {max_bytes} bytes"}],
                          "max_bytes": max_bytes})
    err.http_status = 431
    return err


def too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body exceeds {max_bytes} bytes",
        {"fields": [{"field": "body", "message": f"larger than {max_bytes} bytes"}], "max_bytes": max_bytes},
    )


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole request body, never holding more than `max_bytes` of it: PayloadTooLarge (and
    headers over `MAX_HEADER_BYTES`: 431)."""
    if (err := headers_too_large(scope)) is not None:
        raise err
    declared = header(scope, b"content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that yields `body` first, then the client's own messages (disconnect notices,
    which cancellation relies on)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimit:
    """Refuses bodies over `max_bytes` with 413 before the app (and its JSON parser) sees them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive, self.max_bytes)
        except PureInferError as exc:
            await error_response(exc, scope.get("state", {}).get("request_id"))(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)


class ErrorBoundary:
    """Catches what escaped the app's exception handlers (see the module docstring). Placed inside
    the request-id middleware, so the 500 carries the id and the access line its status."""

    def __init__(self, app: ASGIApp, shapes: ErrorShapes | None = None) -> None:
        self.app = app
        self.shapes = shapes or ErrorShapes()  # an A1111 path's 500 in A1111's shape, as its other errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception as exc:
            log.error("unhandled error", exc_info=exc, extra={"event": "unhandled_error"})
            if not started:
                await error_response(exc, scope.get("state", {}).get("request_id"),
                                     self.shapes.for_path(scope["path"]))(scope, receive, send)
            # Started: the body is cut short, which the server shows its client by closing the
            # connection (a response it cannot complete); nothing else can be said any more.
