from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pureinfer.errors import Unauthorized
from pureinfer.security import ApiKeys, SignatureVerifier, presented_key, sign


def test_sign_and_verify_round_trip() -> None:
    v = SignatureVerifier("k")
    h = sign("k", "post", "/chat", b"{}", timestamp=1000)
    v.verify("POST", "/chat", b"{}", h["X-Timestamp"], h["X-Signature"], now=1000)
    with pytest.raises(Unauthorized, match="Replayed"):
        v.verify("POST", "/chat", b"{}", h["X-Timestamp"], h["X-Signature"], now=1001)


def test_replay_memory_expires_with_the_window() -> None:
    v = SignatureVerifier("k", max_skew_s=300)
    h = sign("k", "GET", "/x", b"", timestamp=1000)
    v.verify("GET", "/x", b"", h["X-Timestamp"], h["X-Signature"], now=1000)
    h2 = sign("k", "GET", "/y", b"", timestamp=1400)
    v.verify("GET", "/y", b"", h2["X-Timestamp"], h2["X-Signature"], now=1400)
    assert len(v._seen) == 1  # the first one is past the window and forgotten


@pytest.mark.parametrize("ts,sig", [(None, "sha256=aa"), ("1000", None), ("abc", "sha256=aa"), ("1000", "md5=aa")])
def test_malformed_signature_headers(ts, sig) -> None:
    with pytest.raises(Unauthorized):
        SignatureVerifier("k").verify("GET", "/", b"", ts, sig, now=1000)


def test_canonical_string_is_the_documented_one() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    h = sign("secret", "POST", "/enhance", body, timestamp=1700000000)
    expected = hmac.new(b"secret", f"1700000000\nPOST\n/enhance\n{hashlib.sha256(body).hexdigest()}".encode(),
                        hashlib.sha256).hexdigest()
    assert h == {"X-Timestamp": "1700000000", "X-Signature": f"sha256={expected}"}


def test_api_keys() -> None:
    keys = ApiKeys(["a", "b"])
    keys.check("b")
    with pytest.raises(Unauthorized):
        keys.check("c")
    with pytest.raises(Unauthorized):
        keys.check(None)
    assert not ApiKeys([]).enabled
    assert presented_key({"authorization": "Bearer xyz"}) == "xyz"
    assert presented_key({"x-api-key": "q"}) == "q"
    assert presented_key({}) is None


def test_sign_cli_matches_signer() -> None:
    out = subprocess.run([sys.executable, "-m", "pureinfer.cli", "sign", "--secret", "s", "--path", "/chat",
                          "--timestamp", "1234"], input=b'{"x":1}', capture_output=True, check=True)
    assert json.loads(out.stdout) == sign("s", "POST", "/chat", b'{"x":1}', 1234)


def test_replay_guard_never_forgets_inside_the_window() -> None:
    """When its memory is full the guard refuses new signatures (503 with Retry-After) instead of
    forgetting ones still inside their window, which could then be replayed."""
    from pureinfer.errors import WorkerOverloaded

    v = SignatureVerifier("k", max_skew_s=300, max_remembered=3)
    signed = [sign("k", "POST", "/chat", f"{i}".encode(), timestamp=1000 + i) for i in range(4)]
    for i in range(3):
        v.verify("POST", "/chat", f"{i}".encode(), signed[i]["X-Timestamp"], signed[i]["X-Signature"], now=1010)
    with pytest.raises(WorkerOverloaded) as info:
        v.verify("POST", "/chat", b"3", signed[3]["X-Timestamp"], signed[3]["X-Signature"], now=1010)
    assert info.value.http_status == 503 and info.value.retry_after == 290  # the oldest expires at 1300
    for now in (1011, 1299):  # the first one is still inside its window: still refused as a replay
        with pytest.raises(Unauthorized, match="Replayed"):
            v.verify("POST", "/chat", b"0", signed[0]["X-Timestamp"], signed[0]["X-Signature"], now=now)
    # Its window over, its memory is free and the waiting request goes through.
    v.verify("POST", "/chat", b"3", signed[3]["X-Timestamp"], signed[3]["X-Signature"], now=1300.5)
    assert len(v._seen) == 3


def test_out_of_order_timestamps_are_kept_to_their_own_window() -> None:
    v = SignatureVerifier("k", max_skew_s=300)
    late = sign("k", "GET", "/a", b"", timestamp=1250)  # signed ahead of our clock
    early = sign("k", "GET", "/b", b"", timestamp=1000)
    v.verify("GET", "/a", b"", late["X-Timestamp"], late["X-Signature"], now=1000)
    v.verify("GET", "/b", b"", early["X-Timestamp"], early["X-Signature"], now=1000)
    with pytest.raises(Unauthorized, match="Replayed"):  # 1301: past /b's window, inside /a's
        v.verify("GET", "/a", b"", late["X-Timestamp"], late["X-Signature"], now=1301)
    assert len(v._seen) == 1


def test_the_query_string_is_signed() -> None:
    v = SignatureVerifier("k")
    h = sign("k", "GET", "/files/a.png?download=1", b"", timestamp=1000)
    for query in ("", "download=2", "download=1&x=1"):
        with pytest.raises(Unauthorized, match="Invalid"):
            v.verify("GET", "/files/a.png", b"", h["X-Timestamp"], h["X-Signature"], now=1000, query=query)
    v.verify("GET", "/files/a.png", b"", h["X-Timestamp"], h["X-Signature"], now=1000, query="download=1")


def test_sign_cli_signs_the_query() -> None:
    out = subprocess.run([sys.executable, "-m", "pureinfer.cli", "sign", "--secret", "s", "--method", "GET",
                          "--path", "/v1/models?limit=2", "--timestamp", "1234"], input=b"", capture_output=True,
                         check=True)
    v = SignatureVerifier("s")
    headers = json.loads(out.stdout)
    v.verify("GET", "/v1/models", b"", headers["X-Timestamp"], headers["X-Signature"], now=1234, query="limit=2")
