"""The HTTP client for worker calls: httpx, with each request leaving in one write.

httpcore writes a request's head and its body separately, and each write is a send() system
call. On loopback, a send() also runs the receiving side of TCP, so on a small virtual machine
each one costs a large share of the gateway's per-request CPU (measured on the 2-core dev box:
~0.8 ms per send(), 4 per gateway request). `CoalescingBackend` buffers writes until the
connection is next read, which for HTTP/1.1 is right after the request is complete: one send()
per request. Everything else (pooling, timeouts, errors) is httpx/httpcore unchanged.
"""

from __future__ import annotations

import logging
from typing import Any

import httpcore
import httpx

log = logging.getLogger("pureinfer.gateway.workers")


class _CoalescingStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._buf = bytearray()

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
        return _CoalescingStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        try:
            return self._inner.get_extra_info(info)
        except AttributeError:
            # anyio reads the peer name of a socket the worker already closed (a worker killed
            # between accept and our first read) and fails on the missing socket; httpcore only
            # asks for "ssl_object" here, and "none" is the right answer on a dead plain socket.
            # The next read then fails as the connection error it is, which we retry elsewhere.
            return None


class CoalescingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return _CoalescingStream(await self._inner.connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return _CoalescingStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def worker_http_client(max_connections: int = 512, max_keepalive: int = 128) -> httpx.AsyncClient:
    """The gateway's client for workers: redirects never followed, no proxies from the environment."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    if isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        # httpx keeps its httpcore pool here; rebuilt with the same limits and our backend.
        transport._pool = httpcore.AsyncConnectionPool(
            max_connections=max_connections, max_keepalive_connections=max_keepalive, keepalive_expiry=5.0,
            http1=True, http2=False, network_backend=CoalescingBackend())
    else:  # pragma: no cover - a future httpx; still correct, one send() more per request
        log.warning("httpx internals changed; worker requests are sent without write coalescing")
    return httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False)
