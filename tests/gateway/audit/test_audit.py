"""The audit trail: rows for successes and failures, `GET /audit` filters, retention, bounded
memory, and a real database outage (a TCP proxy in front of PostgreSQL is cut) that neither
slows nor fails requests nor loses a record: the spill file holds them until the store is back."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, func, select

from pureinfer.db import open_store
from pureinfer.db.models import AuditRecord
from pureinfer.gateway.audit.writer import AuditWriter
from pureinfer.security import ApiKeys
from tests.support.gateway import ADMIN, CALLER, CALLER_KEY, tpl
from tests.support.live import free_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def setup(make_gateway, url, fake_workers, **kw):
    app, c = await make_gateway(url, background=False, **kw)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    ctl, srv = fake_workers("w")
    wid = (await c.post("/workers", json={"url": srv.url, "models": ["qwen_instruct"]}, headers=ADMIN)).json()["id"]
    return app, c, ctl, wid


async def test_audit_rows_for_successes_and_failures(database_url, make_gateway, fake_workers):
    app, c, ctl, wid = await setup(make_gateway, database_url, fake_workers)
    ok = await c.post("/enhance-prompt", json={"prompt": "a lighthouse at dusk"}, headers={**CALLER, "X-Request-ID": "ok-1"})
    assert ok.status_code == 200
    ctl.script = [400]
    bad = await c.post("/enhance-prompt", json={"prompt": "too long"}, headers={**CALLER, "X-Request-ID": "bad-1"})
    assert bad.status_code == 400 and bad.json()["error_code"] == "TOKEN_LIMIT_EXCEEDED"
    nf = await c.post("/enhance-prompt", json={"prompt": "x", "target_model": "nope"}, headers={**CALLER, "X-Request-ID": "nf-1"})
    assert nf.status_code == 404 and nf.json()["error_code"] == "TEMPLATE_NOT_FOUND"
    chat = await c.post("/chat", json={"message": "hi", "target_model": "sdxl", "job_type": "image",
                                       "use_case": "enhancement"}, headers={**CALLER, "X-Request-ID": "chat-1"})
    assert chat.status_code == 200

    async def four() -> bool:
        return (await c.get("/audit", headers=ADMIN)).json()["count"] == 4
    await wait_for(four)

    rows = {r["request_id"]: r for r in (await c.get("/audit", headers=ADMIN)).json()["records"]}
    good = rows["ok-1"]
    sent = [{"role": "system", "content": "You write SDXL prompts."}, {"role": "user", "content": "a lighthouse at dusk"}]
    assert good["messages_sha256"] == hashlib.sha256(json.dumps(sent, separators=(",", ":")).encode()).hexdigest()
    assert (good["endpoint"], good["status"], good["error_code"], good["template_name"], good["template_version"],
            good["fallback_level"], good["cache_hit"], good["worker_id"]) == \
        ("enhance-prompt", 200, None, "sdxl_instruct_sfw", 1, 0, False, wid)
    assert good["caller_key_id"] == ApiKeys.key_id(CALLER_KEY)
    assert good["prompt_preview"] == "a lighthouse at dusk"
    assert good["response_preview"] == "[w] enhanced: a lighthouse at dusk"
    assert (good["prompt_tokens"], good["tokens_generated"]) == (9, 5) and good["latency_ms"] > 0
    assert (rows["bad-1"]["status"], rows["bad-1"]["error_code"], rows["bad-1"]["worker_id"]) == \
        (400, "TOKEN_LIMIT_EXCEEDED", wid)
    assert (rows["nf-1"]["status"], rows["nf-1"]["error_code"], rows["nf-1"]["template_name"]) == \
        (404, "TEMPLATE_NOT_FOUND", None)
    assert rows["chat-1"]["endpoint"] == "chat" and rows["chat-1"]["cache_hit"] is True

    async def ids(q: str) -> set[str]:
        return {r["request_id"] for r in (await c.get(f"/audit?{q}", headers=ADMIN)).json()["records"]}
    assert await ids("status=200") == {"ok-1", "chat-1"}
    assert await ids("error_code=TEMPLATE_NOT_FOUND") == {"nf-1"}
    assert await ids("endpoint=chat") == {"chat-1"}
    assert await ids("request_id=bad-1") == {"bad-1"}
    assert await ids(f"worker_id={wid}&status=400") == {"bad-1"}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert await ids(f"since={future}") == set()
    assert len(await ids("limit=2")) == 2
    denied = await c.get("/audit", headers=CALLER)
    assert denied.status_code == 401 and denied.json()["error_code"] == "UNAUTHORIZED"


def entry(**kw) -> dict:
    base = {"id": uuid.uuid4().hex, "created_at": datetime.now(UTC), "request_id": "r", "endpoint": "enhance-prompt",
            "latency_ms": 1.0, "status": 200}
    return base | kw


async def test_retention_and_idempotent_replay(database_url, tmp_path):
    store = open_store(database_url)
    w = AuditWriter(store, tmp_path / "spill.jsonl", retention_days=30)
    old, new = entry(created_at=datetime.now(UTC) - timedelta(days=40)), entry()
    w.record(old)
    w.record(new)
    await w.flush()
    assert await w.apply_retention() == 1
    with store.session() as s:
        assert list(s.execute(select(AuditRecord.id)).scalars()) == [new["id"]]
    # A spill file holding an already stored record (crash between insert and delete): no duplicate.
    await w._spill([new, entry(request_id="spilled")])
    await w.flush()
    assert not w.pending_spill()
    with store.session() as s:
        assert s.execute(select(func.count()).select_from(AuditRecord)).scalar() == 2
    store.dispose()


async def test_nul_characters_do_not_poison_a_batch(database_url, tmp_path):
    """Random-weight (and real) models can emit U+0000, which PostgreSQL text refuses."""
    store = open_store(database_url)
    w = AuditWriter(store, tmp_path / "spill.jsonl")
    w.record(entry(response_preview="before\x00after", prompt_preview="\x00"))
    w.record(entry(request_id="neighbour"))
    await w.flush()
    assert not w.pending_spill() and w.stats["written"] == 2
    with store.session() as s:
        previews = set(s.execute(select(AuditRecord.response_preview)).scalars())
    assert "before\ufffdafter" in previews
    store.dispose()


async def test_bounded_memory_and_spill_survive_a_restart(database_url, tmp_path):
    dead = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/test", migrate=False, connect_timeout_s=1)
    spill = tmp_path / "spill.jsonl"
    w = AuditWriter(dead, spill, batch_size=10, max_buffer=5)
    for i in range(20):
        w.record(entry(request_id=f"r{i}"))
        await w.settle()  # the spill thread writes what record() handed it
        assert len(w._buf) <= 5  # memory is bounded; the rest is on disk already
    await w.close()  # the store is down: everything ends up in the spill file
    assert len(spill.read_text().splitlines()) == 20 and w.status()["store_ok"] is False
    dead.dispose()
    # The next gateway process (a new writer) replays the file into the store.
    store = open_store(database_url)
    w2 = AuditWriter(store, spill)
    await w2.flush()
    with store.session() as s:
        got = sorted(s.execute(select(AuditRecord.request_id)).scalars())
    assert got == sorted(f"r{i}" for i in range(20)) and not w2.pending_spill()
    store.dispose()


async def test_files_are_written_off_the_event_loop(tmp_path):
    """Spilling (write + fsync) used to run on the event loop, in record() and flush()."""
    dead = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/test", migrate=False, connect_timeout_s=1)
    w = AuditWriter(dead, tmp_path / "spill.jsonl", batch_size=10, max_buffer=5)
    threads: list[int] = []
    real_append = w._append

    def append(path, lines):
        threads.append(threading.get_ident())
        real_append(path, lines)
    w._append = append
    for i in range(12):
        w.record(entry(request_id=f"r{i}"))  # the 6th and 11th hand the full buffer over
        await w.settle()
    await w.close()  # the store is down: flush spills the rest
    assert len(threads) >= 3 and threading.get_ident() not in threads
    assert len((tmp_path / "spill.jsonl").read_text().splitlines()) == 12 and w.stats["dropped"] == 0
    dead.dispose()


async def test_memory_stays_bounded_when_the_disk_fails_too(tmp_path):
    """Store down and the spill file unwritable: the buffer used to take every record back
    (unbounded); now it keeps max_buffer and counts the rest as dropped."""
    dead = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/test", migrate=False, connect_timeout_s=1)
    (tmp_path / "not-a-dir").write_text("")
    w = AuditWriter(dead, tmp_path / "not-a-dir" / "spill.jsonl", batch_size=10, max_buffer=5)
    for i in range(50):
        w.record(entry(request_id=f"r{i}"))
        await w.settle()
        if i % 7 == 0:
            await w.flush()
        assert len(w._buf) <= 5 and w._spilling <= 5
    status = w.status()
    assert status["buffered"] <= 5 and status["dropped"] >= 45 and status["recorded"] == 50
    assert status["dropped"] + status["buffered"] == 50
    dead.dispose()


async def test_a_record_the_store_refuses_is_set_aside(database_url, tmp_path):
    """A record the database refuses for its values stayed in the spill file and failed every
    later replay, with every record behind it; now it moves to the rejected file and the rest lands."""
    store = open_store(database_url)
    spill = tmp_path / "spill.jsonl"
    good = [entry(request_id=f"g{i}") for i in range(25)]
    bad = entry(request_id="bad", tokens_generated=2**70)  # past any INTEGER column
    lines = [json.dumps({**e, "created_at": e["created_at"].isoformat()}) for e in good[:12] + [bad] + good[12:]]
    spill.write_text("\n".join([*lines, '{"torn": '] ) + "\n")
    w = AuditWriter(store, spill, batch_size=10)
    sizes: list[int] = []
    real_read = w._read_batch

    def read_batch(offset):
        out = real_read(offset)
        sizes.append(len(out[0]))
        return out
    w._read_batch = read_batch
    await w.flush()
    assert not w.pending_spill() and max(sizes) <= 10  # replayed a batch at a time
    with store.session() as s:
        stored = set(s.execute(select(AuditRecord.request_id)).scalars())
    assert stored == {f"g{i}" for i in range(25)}
    rejected = [json.loads(line) for line in w.rejected_path.read_text().splitlines()]
    assert [r["request_id"] for r in rejected] == ["bad"] and rejected[0]["rejected_because"]
    assert w.status()["rejected"] == 1 and w.status()["store_ok"] is True
    # The same on the live path: the neighbours of a refused record land.
    w.record(entry(request_id="live-bad", prompt_tokens=2**70))
    w.record(entry(request_id="live-good"))
    await w.flush()
    with store.session() as s:
        assert "live-good" in set(s.execute(select(AuditRecord.request_id)).scalars())
    assert w.status()["rejected"] == 2 and not w.pending_spill()
    await w.close()
    store.dispose()


class TcpProxy:
    """127.0.0.1:port -> 127.0.0.1:5432, in its own thread; `cut()` closes the listener and every
    open connection (a real outage for the client), `restore()` listens again; clearing `flowing`
    stalls every connection (a database that hangs instead of refusing)."""

    def __init__(self, target: int = 5432) -> None:
        self.port, self.target = free_port(), target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.flowing = threading.Event()
        self.flowing.set()

    async def _handle(self, reader, writer) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, uw}

        async def pipe(r, w) -> None:
            try:
                while data := await r.read(65536):
                    while not self.flowing.is_set():  # stalled: hold the bytes, keep the sockets
                        await asyncio.sleep(0.02)
                    w.write(data)
                    await w.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                w.close()
        await asyncio.gather(pipe(reader, uw), pipe(ur, writer))

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def restore(self) -> None:
        async def start():
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                     family=socket.AF_INET, reuse_address=True)
        self._run(start())

    def cut(self) -> None:
        async def stop():
            assert self.server is not None
            self.server.close()
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()
        self._run(stop())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)


async def test_database_outage_neither_slows_nor_loses(pg_schemas, make_gateway, fake_workers):
    direct = pg_schemas()
    proxy = TcpProxy()
    proxy.restore()
    via_proxy = direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    try:
        app, c, ctl, wid = await setup(make_gateway, via_proxy, fake_workers, audit_flush_interval_s=0.05)
        count_engine = create_engine(direct.replace("postgresql+psycopg", "postgresql+psycopg"))

        def stored() -> int:
            with count_engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(AuditRecord)).scalar()

        async def stored_is(n: int):
            async def check() -> bool:
                return await asyncio.to_thread(stored) == n
            return check

        before = []
        for i in range(5):
            t = time.perf_counter()
            assert (await c.post("/enhance-prompt", json={"prompt": f"before {i}"}, headers=CALLER)).status_code == 200
            before.append(time.perf_counter() - t)
        await wait_for(await stored_is(5))

        proxy.cut()  # the database is gone
        during = []
        for i in range(30):
            t = time.perf_counter()
            r = await c.post("/enhance-prompt", json={"prompt": f"during {i}"}, headers=CALLER)
            during.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text  # cached templates keep serving
        ctl.script = [400]
        failing = await c.post("/enhance-prompt", json={"prompt": "failing"}, headers=CALLER)
        assert failing.status_code == 400 and failing.json()["error_code"] == "TOKEN_LIMIT_EXCEEDED"
        writer = app.state.gateway.audit
        await wait_for(lambda: asyncio.sleep(0, writer.status()["store_ok"] is False and writer.pending_spill()),
                       timeout=30)
        # Not slowed by the outage: a request that waited on the database would pay the store
        # timeout (2 s); the bound leaves slack for a loaded machine.
        assert sorted(during)[len(during) // 2] < 1.0
        health = (await c.get("/health")).json()
        assert health["status"] == "healthy" and health["audit"]["store_ok"] is False

        proxy.restore()  # back: the spill file is replayed, nothing lost, nothing doubled
        await wait_for(await stored_is(36), timeout=20)
        # The replay deletes its file after its last batch is stored (a file-thread step later).
        await wait_for(lambda: asyncio.sleep(0, not writer.pending_spill()), timeout=30)
        assert not writer.pending_spill()
        rows = (await c.get("/audit?limit=1000", headers=ADMIN)).json()["records"]
        prompts = {r["prompt_preview"] for r in rows}
        assert {f"during {i}" for i in range(30)} <= prompts and "failing" in prompts
        assert len(rows) == 36 and len({r["id"] for r in rows}) == 36
        count_engine.dispose()
    finally:
        proxy.close()


async def test_stalled_database_neither_slows_nor_loses(pg_schemas, make_gateway, fake_workers):
    """The database hangs (connections open, no answers): one request pays the store timeout,
    the rest are served from the template cache at once; audit records wait in the spill file."""
    direct = pg_schemas()
    proxy = TcpProxy()
    proxy.restore()
    try:
        app, c, ctl, wid = await setup(make_gateway, direct.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"),
                                       fake_workers, store_timeout_s=3.0)
        count_engine = create_engine(direct)

        def stored() -> int:
            with count_engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(AuditRecord)).scalar()

        for i in range(3):
            assert (await c.post("/enhance-prompt", json={"prompt": f"before {i}"}, headers=CALLER)).status_code == 200
        await wait_for(lambda: asyncio.to_thread(lambda: stored() == 3))

        proxy.flowing.clear()
        took = []
        for i in range(15):
            t = time.perf_counter()
            r = await c.post("/enhance-prompt", json={"prompt": f"stalled {i}"}, headers=CALLER)
            took.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
        # One request may pay the store timeout (3 s) once; the others do not wait on the database.
        # Bounds at twice and half that timeout: slack for a loaded machine, none for a wait.
        assert max(took) < 6.0 and sorted(took)[len(took) // 2] < 1.5
        # The hung insert times out (store_timeout_s) and its batch goes to the spill file.
        await wait_for(lambda: asyncio.sleep(0, app.state.gateway.audit.pending_spill()), timeout=30)

        proxy.flowing.set()
        await wait_for(lambda: asyncio.to_thread(lambda: stored() == 18), timeout=20)
        count_engine.dispose()
    finally:
        proxy.close()
