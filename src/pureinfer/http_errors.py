"""HTTP exception handlers shared by the worker and the gateway: every error leaves as the one
envelope (`errors.envelope`) with its status.

FastAPI's validation errors become INVALID_PAYLOAD with one entry per bad field (`messages.0.role`),
malformed JSON included; routing misses become NOT_FOUND; anything unknown reaches
`asgi.ErrorBoundary`: a 500 whose text stays in the log. Input values are never echoed back (they may hold prompts).

The envelope is our shape; a surface that speaks another API's (A1111's `{error, detail, ...}`)
registers its own by path prefix in `ErrorShapes`, and the handlers, the worker's `Guard`
(authentication, body size) and the `ErrorBoundary` build every error of those paths in it, with
the same code, status and details.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pureinfer import metrics
from pureinfer.errors import InvalidPayload, NotFound, PureInferError, as_pureinfer_error, envelope


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_to_invalid_payload(errors: list[dict[str, Any]]) -> InvalidPayload:
    fields = []
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            fields.append({"field": "body", "message": f"malformed JSON: {ctx.get('error', 'cannot parse')}"})
            continue
        fields.append({"field": field_path(err.get("loc", ())), "message": str(err.get("msg", "invalid"))})
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return InvalidPayload(f"Invalid request: {summary}", {"fields": fields})


ErrorShape = Callable[[PureInferError, str | None], dict[str, Any]]


class ErrorShapes:
    """The error body of each path: the shape of the longest registered prefix, else the envelope."""

    def __init__(self, by_prefix: dict[str, ErrorShape] | None = None) -> None:
        self._by_prefix = sorted((by_prefix or {}).items(), key=lambda kv: len(kv[0]), reverse=True)

    def for_path(self, path: str) -> ErrorShape:
        return next((shape for prefix, shape in self._by_prefix if path.startswith(prefix)), envelope)


def error_response(exc: BaseException, request_id: str | None, shape: ErrorShape = envelope) -> JSONResponse:
    err = as_pureinfer_error(exc)
    metrics.ERRORS.labels(code=err.code.value).inc()
    headers = err.headers()
    if request_id:
        headers["X-Request-ID"] = request_id
    return JSONResponse(shape(err, request_id), status_code=err.http_status, headers=headers)


def _rid(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def install_error_handlers(app: FastAPI, shapes: ErrorShapes | None = None) -> None:
    shapes = shapes or ErrorShapes()

    def respond(request: Request, exc: BaseException) -> JSONResponse:
        return error_response(exc, _rid(request), shapes.for_path(request.url.path))

    @app.exception_handler(PureInferError)
    async def _ours(request: Request, exc: PureInferError) -> JSONResponse:
        return respond(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return respond(request, validation_to_invalid_payload(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return respond(request, NotFound(f"No such endpoint or resource: {request.url.path}"))
        err = InvalidPayload(str(exc.detail), {"fields": [{"field": "method", "message": str(exc.detail)}]})
        err.http_status = exc.status_code
        return respond(request, err)
