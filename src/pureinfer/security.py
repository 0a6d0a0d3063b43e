"""API keys and HMAC request signatures: the signer (used by the gateway and `pureinfer sign`)
and the verifier (used by the worker's ASGI middleware).

Signature scheme (WORKER_API.md "Request signature verification"):
    X-Timestamp: unix seconds
    X-Signature: sha256=HEX,  HEX = HMAC-SHA256(secret, f"{ts}\\n{METHOD}\\n{target}\\n{sha256_hex(body)}")
where `target` is the path, followed by `?` and the query string exactly as sent when the request
has one (so a query cannot be added or changed; without one the string is what it always was).
A signature is refused when missing, wrong, more than `max_skew_s` away from our clock, or seen
before within that window (replay). The timestamp may carry a fraction ("1700000000.123456"; the
signer sends microseconds): two identical requests in the same second, such as a retry, then
still sign differently instead of looking like a replay.

The replay guard remembers every accepted signature until its window has passed, never fewer:
forgetting one early would let it be replayed. Its memory is bounded (`max_remembered`); when it
is full, a new signed request is refused with WORKER_OVERLOADED (503, Retry-After: when the
oldest signature expires) rather than accepted unguarded. Only requests with a valid signature
take memory, so only holders of the secret can fill it.

Written by hand because it is a few dozen lines of stdlib `hmac` and `heapq`; no library offers
exactly this canonical string.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import math
import threading
import time
from collections.abc import Iterable

from pureinfer.errors import Unauthorized, WorkerOverloaded

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_target(path: str, query: str = "") -> str:
    """What is signed of the URL: the path, and `?query` when there is a query string."""
    return f"{path}?{query}" if query else path


def canonical_string(timestamp: str, method: str, target: str, body: bytes) -> bytes:
    return f"{timestamp}\n{method.upper()}\n{target}\n{sha256_hex(body)}".encode()


def sign(secret: str, method: str, target: str, body: bytes, timestamp: float | None = None) -> dict[str, str]:
    """Headers that authenticate one request. `target` is the URL path, with `?query` when the
    request has a query string (exactly as it will be sent, percent-encoding included)."""
    if timestamp is None:
        ts = f"{time.time():.6f}"
    else:
        ts = str(timestamp) if isinstance(timestamp, int) else f"{timestamp:.6f}"
    mac = hmac.new(secret.encode(), canonical_string(ts, method, target, body), hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"sha256={mac}"}


class SignatureVerifier:
    """Checks signatures and remembers every accepted one until its window has passed, to refuse
    replays (see the module docstring for the bound on that memory)."""

    def __init__(self, secret: str, max_skew_s: int = 300, max_remembered: int = 1_000_000) -> None:
        self._secret = secret.encode()
        self.max_skew_s = max_skew_s
        self._max_remembered = max_remembered
        self._seen: set[bytes] = set()  # the MACs inside their window
        self._expiry: list[tuple[float, bytes]] = []  # heap of (when the MAC's window ends, MAC)
        self._lock = threading.Lock()

    def verify(self, method: str, path: str, body: bytes, timestamp: str | None, signature: str | None,
               now: float | None = None, query: str = "") -> None:
        if not timestamp or not signature:
            raise Unauthorized("Missing request signature", {"headers": [TIMESTAMP_HEADER, SIGNATURE_HEADER]})
        try:
            ts = float(timestamp)
        except ValueError:
            raise Unauthorized("Malformed X-Timestamp", {"header": TIMESTAMP_HEADER}) from None
        now = time.time() if now is None else now
        if not abs(now - ts) <= self.max_skew_s:  # also refuses nan
            raise Unauthorized("Request signature expired or from the future",
                               {"header": TIMESTAMP_HEADER, "max_skew_s": self.max_skew_s})
        if not signature.startswith("sha256="):
            raise Unauthorized("Malformed X-Signature", {"header": SIGNATURE_HEADER})
        target = request_target(path, query)
        expected = hmac.new(self._secret, canonical_string(timestamp, method, target, body), hashlib.sha256).digest()
        try:
            given = bytes.fromhex(signature.removeprefix("sha256="))
        except ValueError:
            raise Unauthorized("Malformed X-Signature", {"header": SIGNATURE_HEADER}) from None
        if not hmac.compare_digest(expected, given):
            raise Unauthorized("Invalid request signature", {"header": SIGNATURE_HEADER})
        with self._lock:
            self._forget_expired(now)
            if given in self._seen:
                raise Unauthorized("Replayed request signature", {"header": SIGNATURE_HEADER})
            if len(self._seen) >= self._max_remembered:
                wait = self._expiry[0][0] - now
                raise WorkerOverloaded(
                    "Too many signed requests inside the replay window to guard another one",
                    {"remembered": len(self._seen), "window_s": self.max_skew_s},
                    retry_after=max(1, math.ceil(wait)))
            self._seen.add(given)
            # After ts + max_skew_s the timestamp itself is refused, so the MAC may go then.
            heapq.heappush(self._expiry, (ts + self.max_skew_s, given))

    def _forget_expired(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, mac = heapq.heappop(self._expiry)
            self._seen.discard(mac)


class ApiKeys:
    """A set of accepted keys, compared in constant time against every configured key."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [k.encode() for k in keys if k]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, presented: str | None) -> None:
        if not presented:
            raise Unauthorized("Missing API key", {"headers": ["Authorization", "X-API-Key"]})
        given = presented.encode()
        ok = False
        for key in self._keys:  # no early exit: time does not depend on which key matched
            ok |= hmac.compare_digest(key, given)
        if not ok:
            raise Unauthorized("Invalid API key")

    @staticmethod
    def key_id(presented: str) -> str:
        """A short, non-reversible id of a key, for logs and audit rows."""
        return sha256_hex(presented.encode())[:12]


def presented_key(headers: dict[str, str]) -> str | None:
    """The key from `Authorization: Bearer KEY` or `X-API-Key: KEY` (header names lower-cased)."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return headers.get("x-api-key") or None
