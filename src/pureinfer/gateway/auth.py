"""Who may call what: caller API keys for the public endpoints, admin keys for templates,
workers and the audit log, and signatures (the registration secret) for worker registration.

With no keys configured an endpoint group is open; `GatewaySettings` refuses to start that way
on a non-loopback address unless `--insecure` is given (the worker's rule).

Sessions are the browser's way to present an admin key: `POST /session` takes the key once and
sets an HttpOnly, SameSite=Strict cookie; from then on the same JSON API accepts the cookie in
place of the key header (the console has no routes of its own). A browser sends a cookie by
itself, so a cookie alone never authorises a state-changing request: those must also carry the
session's CSRF token in `X-CSRF-Token` (a header another site's page cannot set), else
CSRF_TOKEN_INVALID. A request that presents a key header is judged by the key only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from fastapi import Request

from pureinfer.errors import CsrfTokenInvalid, Unauthorized
from pureinfer.security import SIGNATURE_HEADER, TIMESTAMP_HEADER, ApiKeys, SignatureVerifier, presented_key

SESSION_COOKIE = "pureinfer_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Session:
    key_id: str | None  # the admin key's short id (audit rows name it), None on an open gateway
    csrf_token: str
    expires_at: float  # unix seconds


class SessionStore:
    """Sessions in memory, looked up by the SHA-256 of their cookie (a dump of this memory holds
    no usable cookie). A restart signs everyone out, which is the safe direction. Bounded: past
    `max_sessions` the oldest goes."""

    def __init__(self, ttl_s: float = 12 * 3600, max_sessions: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._by_hash: dict[bytes, Session] = {}  # insertion order = age
        self._lock = threading.Lock()

    @staticmethod
    def _hash(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def create(self, key_id: str | None, now: float | None = None) -> tuple[str, Session]:
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        session = Session(key_id, secrets.token_urlsafe(32), now + self.ttl_s)
        with self._lock:
            while len(self._by_hash) >= self.max_sessions:
                self._by_hash.pop(next(iter(self._by_hash)))
            self._by_hash[self._hash(token)] = session
        return token, session

    def get(self, token: str | None, now: float | None = None) -> Session | None:
        if not token:
            return None
        now = time.time() if now is None else now
        with self._lock:
            session = self._by_hash.get(self._hash(token))
            if session is not None and session.expires_at <= now:
                del self._by_hash[self._hash(token)]
                return None
        return session

    def drop(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._by_hash.pop(self._hash(token), None)


class GatewayAuth:
    def __init__(self, api_keys: list[str], admin_keys: list[str], registration_secret: str | None,
                 insecure: bool, max_skew_s: int = 300) -> None:
        self.callers = ApiKeys(api_keys)
        self.admins = ApiKeys(admin_keys)
        self.registration = SignatureVerifier(registration_secret, max_skew_s) if registration_secret else None
        self.insecure = insecure
        self.sessions = SessionStore()

    def session(self, request: Request) -> Session | None:
        """The request's session from its cookie (None: no cookie, or not a live session). A
        state-changing request must carry the session's CSRF token as well."""
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        if request.method not in SAFE_METHODS:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), session.csrf_token.encode()):
                raise CsrfTokenInvalid("Missing or wrong CSRF token for a request authenticated by a session cookie",
                                       {"header": CSRF_HEADER})
        return session

    def sign_in(self, key: str | None) -> tuple[str, Session]:
        """`POST /session`: an admin key (any, on a gateway without admin keys) for a session."""
        if self.admins.enabled:
            self.admins.check(key)
        return self.sessions.create(ApiKeys.key_id(key) if key else None)

    def caller(self, request: Request) -> str | None:
        """Checks a caller key; returns its short id for the audit trail (None when open).
        An admin key is accepted as a caller key too, and so is an admin's session."""
        key = presented_key({k.lower(): v for k, v in request.headers.items()})
        if key is None and (session := self.session(request)) is not None:
            return session.key_id
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

    def is_admin(self, request: Request) -> bool:
        """Whether the request carries admin rights (an admin key or an admin's session; anyone
        on a gateway without admin keys, whose admin endpoints are open). Jobs use it: a caller
        sees its own jobs, an admin sees all."""
        key = presented_key({k.lower(): v for k, v in request.headers.items()})
        if key is None and self.session(request) is not None:
            return True
        if not self.admins.enabled:
            return True
        try:
            self.admins.check(key)
        except Unauthorized:
            return False
        return True

    def admin(self, request: Request) -> str | None:
        key = presented_key({k.lower(): v for k, v in request.headers.items()})
        if key is None and (session := self.session(request)) is not None:
            return session.key_id
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


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose jobs a request may see: `key_id` the caller's key (None when the gateway is open),
    `sees_all` for admins."""

    key_id: str | None
    sees_all: bool

    def may_see(self, owner_key_id: str | None) -> bool:
        return self.sees_all or owner_key_id == self.key_id


async def owner_dep(request: Request) -> Owner:
    auth = request.app.state.gateway.auth
    key_id = auth.caller(request)  # checks the key first: a bad key is 401 whatever else
    return Owner(key_id, auth.is_admin(request))


async def admin_dep(request: Request) -> str | None:
    return request.app.state.gateway.auth.admin(request)


async def worker_sig_dep(request: Request) -> None:
    await request.app.state.gateway.auth.worker_signature(request)
