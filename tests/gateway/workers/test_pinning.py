"""DNS rebinding: the gateway connects to the addresses it validated, never resolving a worker's
name again between its checks; the Host header and TLS server name stay the name's; each check
validates the name anew and replaces the pin, or takes the worker out of rotation."""

from __future__ import annotations

from typing import Any

import httpcore
import httpx
import pytest

from pureinfer.gateway.workers.transport import AddressPins, CoalescingBackend
from pureinfer.gateway.workers.urls import UrlPolicy
from tests.support.gateway import ADMIN, CALLER, tpl

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_calls_go_to_the_validated_address(sqlite_url, make_gateway, fake_workers):
    dns = {"worker.test": ["127.0.0.1"]}  # a name only our resolver knows: httpx could not resolve it
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return list(dns[host])

    app, c = await make_gateway(sqlite_url, background=False, url_policy=UrlPolicy(["127.0.0.0/8"], resolver))
    await c.post("/templates", json=tpl(), headers=ADMIN)
    ctl, srv = fake_workers("w")
    r = await c.post("/workers", json={"url": f"http://worker.test:{srv.port}"}, headers=ADMIN)
    assert r.status_code == 201 and r.json()["healthy"] is True, r.text
    reg = app.state.gateway.registry
    st = reg.workers[r.json()["id"]]
    assert reg.pins.addresses("worker.test", srv.port) == ("127.0.0.1",)
    checked = len(lookups)

    for i in range(3):
        assert (await c.post("/enhance-prompt", json={"prompt": f"p{i}"}, headers=CALLER)).status_code == 200
    assert ctl.calls[-1]["host"] == f"worker.test:{srv.port}"  # the name, not the address
    assert len(lookups) == checked  # calls do not resolve

    # The name now points at the metadata address: calls still go where it was validated...
    dns["worker.test"] = ["169.254.169.254"]
    assert (await c.post("/enhance-prompt", json={"prompt": "after"}, headers=CALLER)).status_code == 200
    assert ctl.calls[-1]["payload"]["messages"][-1]["content"] == "after"
    # ...until the next check validates it again: refused, out of rotation.
    assert await reg.check(st) is False and "cloud metadata" in st.last_error
    r = await c.post("/enhance-prompt", json={"prompt": "x"}, headers=CALLER)
    assert r.status_code == 503 and r.json()["error_code"] == "WORKER_UNAVAILABLE"

    # An allowed address that changed is validated and pinned anew (nothing listens there).
    dns["worker.test"] = ["127.0.0.2"]
    assert await reg.check(st) is False and st.last_error.startswith("health check failed")
    assert reg.pins.addresses("worker.test", srv.port) == ("127.0.0.2",)
    dns["worker.test"] = ["127.0.0.1"]
    assert await reg.check(st) is True
    assert (await c.post("/enhance-prompt", json={"prompt": "back"}, headers=CALLER)).status_code == 200


class _Recorder(httpcore.AsyncNetworkBackend):
    """A network backend that records where it is asked to connect and the TLS server name."""

    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []
        self.server_names: list[str | None] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        self.connects.append((host, port))
        if host == "10.9.9.9":
            raise httpcore.ConnectError("unreachable")
        recorder = self

        class Stream(httpcore.AsyncNetworkStream):
            async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                                timeout: float | None = None) -> Any:
                recorder.server_names.append(server_hostname)
                raise httpcore.ConnectError("stop here")

            async def aclose(self) -> None:
                pass
        return Stream()

    async def sleep(self, seconds: float) -> None:
        pass


async def test_the_backend_connects_only_to_pinned_addresses_keeping_the_tls_name():
    pins, inner = AddressPins(), _Recorder()
    pool = httpcore.AsyncConnectionPool(network_backend=CoalescingBackend(pins, inner))
    with pytest.raises(httpcore.ConnectError, match="no validated address"):
        await pool.request("GET", "https://gpu.example.test/health/ready")
    assert inner.connects == []  # never resolved, never connected
    assert pins.pin("gpu.example.test", 443, ("10.9.9.9", "10.0.0.7")) is True
    assert pins.pin("gpu.example.test", 443, ("10.9.9.9", "10.0.0.7")) is False  # unchanged
    with pytest.raises(httpcore.ConnectError, match="stop here"):
        await pool.request("GET", "https://gpu.example.test/health/ready")
    assert inner.connects == [("10.9.9.9", 443), ("10.0.0.7", 443)]  # each validated address in turn
    assert inner.server_names == ["gpu.example.test"]  # SNI and certificate checks: the name
    await pool.aclose()


async def test_httpx_client_is_built_on_the_pinning_backend():
    from pureinfer.gateway.workers.transport import worker_http_client

    client = worker_http_client(AddressPins())
    with pytest.raises(httpx.ConnectError, match="no validated address"):
        await client.get("http://127.0.0.1:9/health/ready")
    await client.aclose()
