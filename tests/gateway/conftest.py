"""Gateway test fixtures: a `database_url` over SQLite and the real PostgreSQL (one uniquely
named schema per test, all dropped at the end of the session), gateway apps with their lifespan
running, and fake workers on real loopback HTTP servers."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from pureinfer.gateway.app import create_app
from pureinfer.gateway.workers.urls import UrlPolicy
from tests.support.gateway import FakeControl, fake_worker_app, gateway_settings
from tests.support.live import LiveServer

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_SESSION = uuid.uuid4().hex[:8]
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_schemas() -> Iterator[Callable[[], str]]:
    """Makes schemas `pi_gw_<session>_<n>` on the real PostgreSQL; drops them all at the end."""
    engine = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    made: list[str] = []

    def make() -> str:
        name = f"pi_gw_{_SESSION}_{next(_counter)}"
        with engine.connect() as c:
            c.execute(text(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        return f"{PG_URL}?options=-csearch_path%3D{name}"

    yield make
    with engine.connect() as c:
        for name in made:
            c.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, pg_schemas: Callable[[], str]) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gateway.db'}"
    return pg_schemas()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'gateway.db'}"


@pytest.fixture
async def make_gateway(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """`await make_gateway(database_url, **settings)` -> (app, client). The lifespan runs (store
    opened and migrated, audit writer started); the health loop runs unless `background=False`."""
    stack = contextlib.AsyncExitStack()

    async def make(database_url: str, *, background: bool = True, url_policy: UrlPolicy | None = None,
                   **overrides: Any) -> tuple[FastAPI, httpx.AsyncClient]:
        settings = gateway_settings(tmp_path, database_url, **overrides)
        app = create_app(settings, url_policy=url_policy, start_background=background)
        await stack.enter_async_context(app.router.lifespan_context(app))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=30)
        stack.push_async_callback(client.aclose)
        return app, client

    yield make
    await stack.aclose()


@pytest.fixture
def fake_workers() -> Iterator[Callable[..., tuple[FakeControl, LiveServer]]]:
    """`fake_workers(name)` starts a fake worker on a free loopback port."""
    servers: list[LiveServer] = []

    def start(name: str = "fake", **kw: Any) -> tuple[FakeControl, LiveServer]:
        ctl = FakeControl(name=name, **kw)
        srv = LiveServer(fake_worker_app(ctl), lifespan="off").start()
        servers.append(srv)
        return ctl, srv

    yield start
    for srv in servers:
        if srv.thread.is_alive():
            srv.kill()
