"""API keys and HMAC request signatures: the signer (used by the gateway and `pureinfer sign`)
and the verifier (used by the worker's ASGI middleware).

Signature scheme (WORKER_API.md "Request signature verification"):
    X-Timestamp: unix seconds
    X-Signature: sha256=HEX,  HEX = HMAC-SHA256(secret, f"{ts}\\n{METHOD}\\n{path}\\n{sha256_hex(body)}")
A signature is refused when missing, wrong, more than `max_skew_s` away from our clock, or seen
before within that window (replay). The timestamp may carry a fraction ("1700000000.123456"; the
signer sends microseconds): two identical requests in the same second, such as a retry, then
still sign differently instead of looking like a replay. Written by hand because it is a dozen lines of stdlib `hmac`;
no library offers exactly this canonical string.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from pureinfer.errors import Unauthorized

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_string(timestamp: str, method: str, path: str, body: bytes) -> bytes:
    return f"{timestamp}\n{method.upper()}\n{path}\n{sha256_hex(body)}".encode()


def sign(secret: str, method: str, path: str, body: bytes, timestamp: float | None = None) -> dict[str, str]:
    """Headers that authenticate one request. `path` is the URL path without the query string."""
    if timestamp is None:
        ts = f"{time.time():.6f}"
    else:
        ts = str(timestamp) if isinstance(timestamp, int) else f"{timestamp:.6f}"
    mac = hmac.new(secret.encode(), canonical_string(ts, method, path, body), hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"sha256={mac}"}


class SignatureVerifier:
    """Checks signatures and remembers the ones seen inside the time window to refuse replays."""

    def __init__(self, secret: str, max_skew_s: int = 300, max_remembered: int = 100_000) -> None:
        self._secret = secret.encode()
        self.max_skew_s = max_skew_s
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max_remembered = max_remembered
        self._lock = threading.Lock()

    def verify(self, method: str, path: str, body: bytes, timestamp: str | None, signature: str | None,
               now: float | None = None) -> None:
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
        expected = hmac.new(self._secret, canonical_string(timestamp, method, path, body), hashlib.sha256).hexdigest()
        given = signature.removeprefix("sha256=")
        if not hmac.compare_digest(expected, given):
            raise Unauthorized("Invalid request signature", {"header": SIGNATURE_HEADER})
        with self._lock:
            self._forget_older_than(now - self.max_skew_s)
            if given in self._seen:
                raise Unauthorized("Replayed request signature", {"header": SIGNATURE_HEADER})
            self._seen[given] = ts
            while len(self._seen) > self._max_remembered:
                self._seen.popitem(last=False)

    def _forget_older_than(self, cutoff: float) -> None:
        # Insertion order is close to timestamp order; stop at the first fresh entry.
        while self._seen:
            key, ts = next(iter(self._seen.items()))
            if ts >= cutoff:
                break
            self._seen.pop(key)


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
