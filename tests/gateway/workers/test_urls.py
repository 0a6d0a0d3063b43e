"""Worker URL validation: schemes, allowlist (loopback, private), link-local and metadata
addresses (also behind a name), and the checks at registration time."""

from __future__ import annotations

import pytest

from pureinfer.errors import InvalidPayload
from pureinfer.gateway.workers.urls import UrlPolicy

FAKE_DNS = {
    "metadata.evil.test": ["169.254.169.254"],
    "linklocal.evil.test": ["10.0.0.5", "169.254.10.1"],
    "mapped.evil.test": ["::ffff:169.254.169.254"],
    "gpu1.internal.test": ["10.1.2.3"],
    "public.test": ["93.184.216.34"],
}


def resolver(host: str, port: int) -> list[str]:
    if host in FAKE_DNS:
        return FAKE_DNS[host]
    raise OSError("no such host")


def refused(policy: UrlPolicy, url: str) -> str:
    with pytest.raises(InvalidPayload) as info:
        policy.validate(url)
    assert info.value.details["fields"][0]["field"] == "url"
    return info.value.message


def test_schemes_and_shape():
    p = UrlPolicy(["127.0.0.0/8"], resolver)
    assert p.validate("http://127.0.0.1:8000/").url == "http://127.0.0.1:8000"
    assert p.validate("HTTPS://127.0.0.1/base/").url == "https://127.0.0.1/base"
    for url in ("ftp://127.0.0.1/", "file:///etc/passwd", "gopher://127.0.0.1", "127.0.0.1:8000", "javascript:x"):
        assert "scheme" in refused(p, url)
    assert "credentials" in refused(p, "http://user:pw@127.0.0.1/")
    assert "query" in refused(p, "http://127.0.0.1/?x=1")
    assert "no host" in refused(p, "http:///x")


def test_loopback_only_when_allowed():
    assert "loopback" in refused(UrlPolicy(["10.0.0.0/8"], resolver), "http://127.0.0.1:9000")
    assert "loopback" in refused(UrlPolicy([], resolver), "http://[::1]:9000")
    assert UrlPolicy(["127.0.0.0/8"], resolver).validate("http://127.0.0.1:9000")
    # "localhost" by name, with the real resolver (the default allowlist).
    assert UrlPolicy(["127.0.0.0/8", "::1/128", "localhost"]).validate("http://localhost:1").url == "http://localhost:1"
    assert "loopback" in refused(UrlPolicy(["10.0.0.0/8"]), "http://localhost:1")


def test_private_ranges_need_the_allowlist():
    p = UrlPolicy(["127.0.0.0/8"], resolver)
    for url in ("http://10.0.0.5", "http://192.168.1.20:8000", "http://172.16.0.9", "http://gpu1.internal.test"):
        assert "private" in refused(p, url)
    assert "public" in refused(p, "http://public.test")
    ok = UrlPolicy(["10.0.0.0/8", "192.168.0.0/16"], resolver)
    assert ok.validate("http://10.0.0.5:8000") and ok.validate("http://gpu1.internal.test:8000")
    assert UrlPolicy(["*.internal.test"], resolver).validate("http://gpu1.internal.test")


def test_link_local_and_metadata_always_refused():
    everything = UrlPolicy(["0.0.0.0/0", "::/0", "*.evil.test", "metadata.evil.test"], resolver)
    for url in ("http://169.254.169.254/latest/meta-data", "http://169.254.1.1:8000", "http://[fe80::1]:80",
                "http://[fd00:ec2::254]/", "http://100.100.100.200/", "http://0.0.0.0:8000",
                "http://[::ffff:169.254.169.254]/"):
        assert "never allowed" in refused(everything, url), url
    # Names that resolve there, even when the name itself is allowlisted.
    assert "cloud metadata" in refused(everything, "http://metadata.evil.test:8000")
    assert "link-local" in refused(everything, "http://linklocal.evil.test")
    assert "cloud metadata" in refused(everything, "http://mapped.evil.test")
    assert "does not resolve" in refused(everything, "http://nowhere.test")


def test_validated_addresses_and_normal_form():
    p = UrlPolicy(["10.0.0.0/8", "127.0.0.0/8"], resolver)
    v = p.validate("HTTP://GPU1.Internal.Test.:8000/api/")
    assert (v.url, v.host, v.port, v.addresses) == ("http://gpu1.internal.test:8000/api", "gpu1.internal.test",
                                                    8000, ("10.1.2.3",))
    v = p.validate("https://127.0.0.1")
    assert (v.url, v.port, v.addresses) == ("https://127.0.0.1", 443, ("127.0.0.1",))
    for url in ("http://127.0.0.1/a\x00b", "http://127.0.0.1/ x", "http://127.0.0.1/a\nb"):
        assert "control characters" in refused(p, url)
    assert "ASCII" in refused(p, "http://bücher.test/")
