"""Worker URL validation (SSRF guard) for admin-added and self-registered workers.

Rules, in order:
  1. scheme http or https; a host; no user:password part.
  2. every address the host resolves to (an IP literal resolves to itself) is checked:
     link-local (169.254.0.0/16, fe80::/10, also IPv4-mapped), cloud metadata addresses
     (169.254.169.254, fd00:ec2::254, 100.100.100.200), unspecified and multicast addresses are
     always refused, whatever the allowlist says;
  3. the host must be allowed: its name matches an allowlisted name ("host" or "*.suffix"), or
     every resolved address lies in an allowlisted CIDR. Loopback and private ranges are allowed
     only when listed (the default lists loopback only).
The same check runs again before each health check, so a name that later resolves elsewhere
(DNS rebinding) is taken out of rotation. Redirects are never followed by the client.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from pureinfer.errors import InvalidPayload

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


def _refused_always(ip: IPAddress) -> str | None:
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    for candidate in (ip, mapped):
        if candidate is None:
            continue
        if candidate in METADATA_ADDRESSES:
            return "cloud metadata address"
        if candidate.is_link_local:
            return "link-local address"
        if candidate.is_unspecified:
            return "unspecified address"
        if candidate.is_multicast:
            return "multicast address"
    return None


class UrlPolicy:
    def __init__(self, allowlist: Iterable[str], resolver: Resolver = system_resolver) -> None:
        self.names: list[str] = []
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allowlist:
            entry = entry.strip()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.append(entry.lower().rstrip("."))
        self.resolver = resolver

    def _name_allowed(self, host: str) -> bool:
        for name in self.names:
            if name.startswith("*.") and host.endswith(name[1:]):
                return True
            if host == name:
                return True
        return False

    def validate(self, url: str, field: str = "url") -> str:
        """The normalised URL (no trailing slash), or InvalidPayload naming the reason."""
        def bad(msg: str) -> InvalidPayload:
            return InvalidPayload.field(field, msg)

        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise bad(f"not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise bad(f"scheme {scheme or '(none)'!r} not allowed: only http and https")
        if parts.username or parts.password:
            raise bad("credentials in the URL are not allowed")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise bad("the URL has no host")
        if parts.query or parts.fragment:
            raise bad("the URL must not have a query or fragment")
        port = port or (443 if scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = [ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(host, port)]
            except (OSError, UnicodeError) as exc:
                raise bad(f"host {host!r} does not resolve: {exc}") from None
            if not addresses:
                raise bad(f"host {host!r} does not resolve") from None
        for ip in addresses:
            reason = _refused_always(ip)
            if reason:
                raise bad(f"host {host!r} resolves to {ip}, a {reason}; never allowed")
        if not self._name_allowed(host):
            outside = [str(ip) for ip in addresses if not any(ip in net for net in self.networks)]
            if outside:
                kind = "loopback" if all(ip.is_loopback for ip in addresses) else (
                    "private" if all(ip.is_private for ip in addresses) else "public")
                raise bad(f"host {host!r} ({kind} address {', '.join(outside)}) is not in the worker allowlist")
        path = parts.path.rstrip("/")
        netloc = parts.netloc.lower()
        return f"{scheme}://{netloc}{path}"
