"""Who may call what: caller API keys for the public endpoints, admin keys for templates,
workers and the audit log, and signatures (the registration secret) for worker registration.

With no keys configured an endpoint group is open; `GatewaySettings` refuses to start that way
on a non-loopback address unless `--insecure` is given (the worker's rule).
"""

from __future__ import annotations

from fastapi import Request

from pureinfer.errors import Unauthorized
from pureinfer.security import SIGNATURE_HEADER, TIMESTAMP_HEADER, ApiKeys, SignatureVerifier, presented_key


class GatewayAuth:
    def __init__(self, api_keys: list[str], admin_keys: list[str], registration_secret: str | None,
                 insecure: bool, max_skew_s: int = 300) -> None:
        self.callers = ApiKeys(api_keys)
        self.admins = ApiKeys(admin_keys)
        self.registration = SignatureVerifier(registration_secret, max_skew_s) if registration_secret else None
        self.insecure = insecure

    def caller(self, request: Request) -> str | None:
        """Checks a caller key; returns its short id for the audit trail (None when open).
        An admin key is accepted as a caller key too."""
        key = presented_key({k.lower(): v for k, v in request.headers.items()})
        if not self.callers.enabled:
            return ApiKeys.key_id(key) if key else None
        if key and self.admins.enabled:
            try:
                self.admins.check(key)
                return ApiKeys.key_id(key)
            except Unauthorized:
                pass
        self.callers.check(key)
        assert key is not None
        return ApiKeys.key_id(key)

    def admin(self, request: Request) -> str | None:
        key = presented_key({k.lower(): v for k, v in request.headers.items()})
        if not self.admins.enabled:
            return ApiKeys.key_id(key) if key else None
        self.admins.check(key)
        assert key is not None
        return ApiKeys.key_id(key)

    async def worker_signature(self, request: Request) -> None:
        """Registration and heartbeats are signed with the registration secret. Without one,
        registration is accepted only with --insecure."""
        if self.registration is None:
            if self.insecure:
                return
            raise Unauthorized("Worker registration is disabled: the gateway has no registration secret",
                               suggested_action="Start the gateway with --registration-secret and the worker "
                                                "with the same --gateway-secret")
        body = await request.body()
        self.registration.verify(request.method, request.url.path, body,
                                 request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER),
                                 query=request.scope.get("query_string", b"").decode("latin-1"))


# async on purpose: FastAPI runs plain-def dependencies in its thread pool (a thread hop per request).
async def caller_dep(request: Request) -> str | None:
    return request.app.state.gateway.auth.caller(request)


async def admin_dep(request: Request) -> str | None:
    return request.app.state.gateway.auth.admin(request)


async def worker_sig_dep(request: Request) -> None:
    await request.app.state.gateway.auth.worker_signature(request)
