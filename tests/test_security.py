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
