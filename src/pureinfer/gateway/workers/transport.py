"""The HTTP client for worker calls: httpx, connecting only to validated addresses, with each
request leaving in one write.

Pinned addresses (DNS rebinding): a worker URL is validated by resolving its name
(`urls.UrlPolicy`), and the registry records the addresses it validated in `AddressPins`. The
network backend connects to those addresses only, never resolving the name itself, so a name
that answers differently between the check and the call (DNS rebinding) cannot send a call
elsewhere; a host with no pinned address is not connected to at all. httpx still sees the URL's
name: the Host header, the TLS server name (SNI) and certificate checks are the name's.

Write coalescing: httpcore writes a request's head and its body separately, and each write is a send() system
call. On loopback, a send() also runs the receiving side of TCP, so on a small virtual machine
each one costs a large share of the gateway's per-request CPU (measured on the 2-core dev box:
~0.8 ms per send(), 4 per gateway request). `CoalescingBackend` buffers writes until the
connection is next read, which for HTTP/1.1 is right after the request is complete: one send()
per request. Everything else (pooling, timeouts, errors) is httpx/httpcore unchanged.
"""

from __future__ import annotations

from typing import Any

import httpcore
import httpx


class AddressPins:
    """(host, port) -> the addresses last validated for it. Written by the registry at each
    validation, read by the backend at each connect."""

    def __init__(self) -> None:
        self._pins: dict[tuple[str, int], tuple[str, ...]] = {}

    def pin(self, host: str, port: int, addresses: tuple[str, ...]) -> bool:
        """Record the validated addresses; True when they differ from the last ones."""
        key = (host.lower(), port)
        changed = self._pins.get(key) != addresses
        self._pins[key] = addresses
        return changed

    def addresses(self, host: str, port: int) -> tuple[str, ...]:
        return self._pins.get((host.lower(), port), ())


class _CoalescingStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, pins: AddressPins, host: str, port: int,
                 address: str) -> None:
        self._inner = inner
        self._buf = bytearray()
        self._pins, self._host, self._port, self._address = pins, host, port, address

    async def _flush(self, timeout: float | None) -> None:
        if self._buf:
            data = bytes(self._buf)
            self._buf.clear()
            await self._inner.write(data, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._buf += buffer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        return await self._inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        await self._flush(timeout)
        return _CoalescingStream(await self._inner.start_tls(ssl_context, server_hostname, timeout),
                                 self._pins, self._host, self._port, self._address)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._address not in self._pins.addresses(self._host, self._port):
            # The pool asks this of an idle keep-alive connection before reusing it; "readable"
            # (as if the worker had closed it) makes it drop the connection. So once a name's
            # pin changes, its next request connects to the newly validated address.
            return True
        try:
            return self._inner.get_extra_info(info)
        except AttributeError:
            # anyio reads the peer name of a socket the worker already closed (a worker killed
            # between accept and our first read) and fails on the missing socket; httpcore only
            # asks for "ssl_object" here, and "none" is the right answer on a dead plain socket.
            # The next read then fails as the connection error it is, which we retry elsewhere.
            return None


class CoalescingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, pins: AddressPins, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._pins = pins
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        addresses = self._pins.addresses(host, port)
        if not addresses:
            raise httpcore.ConnectError(f"{host}:{port} has no validated address (not connecting)")
        error: Exception | None = None
        for address in addresses:  # every one was validated; the first that answers serves
            try:
                stream = await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return _CoalescingStream(stream, self._pins, host, port, address)
        assert error is not None
        raise error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("worker calls connect over TCP, to validated addresses only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def worker_http_client(pins: AddressPins, max_connections: int = 512, max_keepalive: int = 128) -> httpx.AsyncClient:
    """The gateway's client for workers: connects to `pins` only, redirects never followed, no
    proxies from the environment."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    if isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        # httpx keeps its httpcore pool here; rebuilt with the same limits and our backend.
        transport._pool = httpcore.AsyncConnectionPool(
            # An idle connection is dropped before the worker's own keep-alive timeout (uvicorn: 5 s)
            # can close it under a request just sent on it (a POST that then fails to read).
            max_connections=max_connections, max_keepalive_connections=max_keepalive, keepalive_expiry=2.0,
            http1=True, http2=False, network_backend=CoalescingBackend(pins))
    else:  # pragma: no cover - a future httpx: refuse to run with a client that resolves names itself
        raise RuntimeError("httpx internals changed: the worker client cannot pin validated addresses")
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
