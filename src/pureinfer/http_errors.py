"""HTTP exception handlers shared by the worker and the gateway: every error leaves as the one
envelope (`errors.envelope`) with its status.

FastAPI's validation errors become INVALID_PAYLOAD with one entry per bad field (`messages.0.role`),
malformed JSON included; routing misses become NOT_FOUND; anything unknown reaches
`asgi.ErrorBoundary`: a 500 whose text stays in the log. Input values are never echoed back (they may hold prompts).
"""

from __future__ import annotations

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


def error_response(exc: BaseException, request_id: str | None) -> JSONResponse:
    err = as_pureinfer_error(exc)
    metrics.ERRORS.labels(code=err.code.value).inc()
    headers = err.headers()
    if request_id:
        headers["X-Request-ID"] = request_id
    return JSONResponse(envelope(err, request_id), status_code=err.http_status, headers=headers)


def _rid(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PureInferError)
    async def _ours(request: Request, exc: PureInferError) -> JSONResponse:
        return error_response(exc, _rid(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_to_invalid_payload(list(exc.errors())), _rid(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error_response(NotFound(f"No such endpoint or resource: {request.url.path}"), _rid(request))
        err = InvalidPayload(str(exc.detail), {"fields": [{"field": "method", "message": str(exc.detail)}]})
        err.http_status = exc.status_code
        return error_response(err, _rid(request))
