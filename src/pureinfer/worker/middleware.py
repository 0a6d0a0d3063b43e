"""Pure ASGI middleware (Starlette's advice: no BaseHTTPMiddleware, streaming stays intact).

- `RequestContext` (outermost): request id (the caller's `X-Request-ID` when sane, else a new
  one) in `scope["state"]` and the logging context; one access log line; request metrics and the
  rolling window behind /status.
- `Guard`: the body-size limit (413 INVALID_PAYLOAD) and authentication — API key and, when a
  signing secret is set, the HMAC signature over the exact body bytes. The body is read once here
  (bounded by the limit, `pureinfer.asgi.read_body`, the gateway's limit too) and replayed to the app.
"""

from __future__ import annotations

import logging
import time

from pureinfer import metrics
from pureinfer.asgi import ASGIApp, Message, Receive, Scope, Send, read_body, replaying
from pureinfer.errors import PureInferError
from pureinfer.http_errors import ErrorShapes, error_response
from pureinfer.logging import request_id_from, request_id_var
from pureinfer.security import SIGNATURE_HEADER, TIMESTAMP_HEADER, ApiKeys, SignatureVerifier, presented_key

access_log = logging.getLogger("pureinfer.access")


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class RequestContext:
    def __init__(self, app: ASGIApp, *, endpoints: set[str], work_endpoints: set[str],
                 window: metrics.RollingWindow) -> None:
        self.app = app
        self.endpoints = endpoints  # metric labels: known paths only, so cardinality stays bounded
        self.work_endpoints = work_endpoints  # the ones that count in /status's rolling window
        self.window = window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(_headers(scope).get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        status = 500
        start = time.monotonic()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.monotonic() - start
            path = scope["path"]
            label = path if path in self.endpoints else ("/files" if path.startswith("/files/") else "other")
            metrics.REQUESTS.labels(endpoint=label, status=str(status)).inc()
            metrics.REQUEST_LATENCY.labels(endpoint=label).observe(elapsed)
            if path in self.work_endpoints:
                self.window.record(elapsed, ok=status < 400)
            access_log.info("request", extra={"method": scope["method"], "path": path, "status": status,
                                              "duration_ms": round(elapsed * 1000, 2)})
            request_id_var.reset(token)


class Guard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, keys: ApiKeys, verifier: SignatureVerifier | None,
                 open_paths: frozenset[str], open_prefixes: tuple[str, ...] = (),
                 shapes: ErrorShapes | None = None) -> None:
        self.app = app
        self.shapes = shapes or ErrorShapes()
        self.max_body_bytes = max_body_bytes
        self.keys = keys
        self.verifier = verifier
        self.open_paths = open_paths
        self.open_prefixes = open_prefixes

    def _is_open(self, path: str) -> bool:
        return path in self.open_paths or any(path.startswith(p) for p in self.open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id")
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
            self._authenticate(scope, body)
        except PureInferError as exc:
            await error_response(exc, rid, self.shapes.for_path(scope["path"]))(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)

    def _authenticate(self, scope: Scope, body: bytes) -> None:
        if self._is_open(scope["path"]):
            return
        headers = _headers(scope)
        if self.keys.enabled:
            self.keys.check(presented_key(headers))
        if self.verifier is not None:
            self.verifier.verify(scope["method"], scope["path"], body,
                                 headers.get(TIMESTAMP_HEADER.lower()), headers.get(SIGNATURE_HEADER.lower()),
                                 query=scope.get("query_string", b"").decode("latin-1"))
