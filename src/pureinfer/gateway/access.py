"""The gateway's outermost middleware (pure ASGI): request id, one access line, and the audit row of
a request no service recorded.

- The request id: a sane `X-Request-ID` from the caller, or a new one; echoed back, on every log
  line of the request (`pureinfer.logging`), passed on to the worker.
- One access log line per request (logger `pureinfer.access`): method, path, status, duration and
  the request id; never a body, header or query value.
- The audit trail holds every request to a public endpoint (the routes tagged "public", found
  from the app's routes, so endpoints added later are covered): a request refused before its
  service ran (401 without a valid key, 413 body too large, 400 invalid body, 405, a 500 outside
  the service) gets a row here with its status and error code; the services record the rest.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pureinfer.errors import PureInferError
from pureinfer.gateway.audit.writer import AuditMark, audit_mark
from pureinfer.logging import request_id_from, request_id_var

access_log = logging.getLogger("pureinfer.access")
log = logging.getLogger("pureinfer.gateway")

AUDITED_TAG = "public"
_ERROR_BODY_MAX = 65_536  # an error envelope is small; more is not kept to read its code


class AccessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._audited: list[re.Pattern[str]] | None = None

    def _audited_paths(self, scope: Scope) -> list[re.Pattern[str]]:
        """The path patterns of the public operations, from the app's OpenAPI document (read once,
        at the first request; the document is what FastAPI resolves included routers into)."""
        if self._audited is None:
            app = scope.get("app")
            doc = app.openapi() if hasattr(app, "openapi") else {"paths": {}}
            self._audited = [
                re.compile("".join("[^/]+" if part.startswith("{") else re.escape(part)
                                   for part in re.split(r"(\{[^}]+\})", path)))
                for path, ops in doc.get("paths", {}).items()
                if any(AUDITED_TAG in (op.get("tags") or []) for op in ops.values() if isinstance(op, dict))]
        return self._audited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None))
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)  # every log record of this request carries it
        mark = AuditMark()
        mark_token = audit_mark.set(mark)
        status = 500
        error_body = bytearray()
        start = time.monotonic()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body" and status >= 400 and len(error_body) < _ERROR_BODY_MAX:
                error_body.extend(message.get("body", b"")[: _ERROR_BODY_MAX - len(error_body)])
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.monotonic() - start
            path = scope["path"]
            if status >= 400 and not mark.recorded and any(p.fullmatch(path) for p in self._audited_paths(scope)):
                self._audit_refusal(scope, rid, status, bytes(error_body), elapsed)
            access_log.info("request", extra={"method": scope["method"], "path": path, "status": status,
                                              "duration_ms": round(elapsed * 1000, 2)})
            audit_mark.reset(mark_token)
            request_id_var.reset(token)

    @staticmethod
    def _audit_refusal(scope: Scope, rid: str, status: int, body: bytes, elapsed: float) -> None:
        gateway = getattr(getattr(scope.get("app"), "state", None), "gateway", None)
        if gateway is None:  # not started (a request during start-up)
            return
        error_code: str | None = None
        try:
            parsed: Any = json.loads(body) if body else None
            if isinstance(parsed, dict) and isinstance(parsed.get("error_code"), str):
                error_code = parsed["error_code"][:64]
        except ValueError:
            pass
        caller: str | None = None
        if status != 401:  # a refused key is nobody's id
            try:
                caller = gateway.auth.caller(Request(scope))
            except PureInferError:
                caller = None
        error_code = error_code or "HTTP_ERROR"
        gateway.audit.record({
            "id": uuid.uuid4().hex, "created_at": datetime.now(UTC), "request_id": rid,
            "endpoint": scope["path"].strip("/")[:50] or "/", "caller_key_id": caller,
            "latency_ms": round(elapsed * 1000, 3), "status": status, "error_code": error_code,
            "strategy": f"none: the request was refused before it was processed ({error_code})",
        })
