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
`validate()` returns the addresses it checked; the registry pins them (`transport.AddressPins`)
and the worker client connects to those addresses only, never resolving the name again. The same
check runs again before each health check: a name that now resolves elsewhere is validated anew
and its pin replaced, or, refused, taken out of rotation (DNS rebinding). Redirects are never
followed by the client.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class ValidatedUrl:
    """A worker URL that passed the rules, and the addresses its host had when it did."""

    url: str  # normalised: lower-case scheme and host, no trailing slash
    host: str
    port: int
    addresses: tuple[str, ...]


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

    def validate(self, url: str, field: str = "url") -> ValidatedUrl:
        """The normalised URL and the addresses checked, or InvalidPayload naming the reason."""
        def bad(msg: str) -> InvalidPayload:
            return InvalidPayload.field(field, msg)

        if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url.strip()):
            raise bad("the URL contains spaces or control characters")
        try:
            parts = urlsplit(url.strip())
            explicit_port = parts.port
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
        if not host.isascii():
            raise bad("the host must be ASCII (write an internationalised name in its xn-- form)")
        if parts.query or parts.fragment:
            raise bad("the URL must not have a query or fragment")
        port = explicit_port or (443 if scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = [ipaddress.ip_address(a.split("%")[0]) for a in self.resolver(host, port)]
            except (OSError, UnicodeError, ValueError) as exc:
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
        netloc = f"[{host}]" if ":" in host else host
        if explicit_port is not None:
            netloc += f":{explicit_port}"
        return ValidatedUrl(f"{scheme}://{netloc}{parts.path.rstrip('/')}", host, port,
                            tuple(dict.fromkeys(str(ip) for ip in addresses)))
