"""The audit writer: `record()` never blocks, never raises, and does no I/O.

    record() -> buffer (<= max_buffer) --(batch, every flush interval or batch size)--> store
                  |  full: the whole buffer                |  store down / slow
                  v                                        v
            spill thread --(JSON lines, fsync'd)--> spill file --(replayed in batches when the
                                                                 store answers; ids make it
                                                                 idempotent)--> store
    a record the store refuses on its own (a value out of range, too long, ...) --> rejected file

Every file operation (spill, fsync, replay reads, rejected records) runs on one dedicated
thread, in order, never on the event loop. Memory is bounded in every path: at most
`max_buffer` entries wait in the buffer and at most `max_buffer` more are being written by the
spill thread; replay reads `batch_size` lines at a time. Only when the store is down *and* the
disk cannot take the spill (failing, or too slow to keep up) are records dropped; each one is
counted (`dropped` in the status) and logged, never silently.

A batch the store refuses for its data (not for being unreachable) is retried record by record;
a record that fails on its own goes to the rejected file (`rejected` in the status) so the rest
lands, instead of blocking every later replay. An insert that hangs (a stalled database) is
abandoned after `store_timeout_s` and its batch spilled; no second insert starts while one still
hangs, so threads do not pile up. The ids make a late commit of the abandoned insert and the
replay of its spilled copy agree. Retention deletes records older than `retention_days` about
once an hour.

Hand-written because no library offers a durable, bounded, batching sink for SQLAlchemy; the
parts are a deque, two files, one thread and a loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
from sqlalchemy import exc as sql_errors

from pureinfer.db.store import Store
from pureinfer.gateway.audit import repository as repo
from pureinfer.gateway.audit.protocol import ENTRY_FIELDS

log = logging.getLogger("pureinfer.gateway.audit")
T = TypeVar("T")


class AuditMark:
    """Whether the current request has its audit row. The gateway's access middleware sets one
    per request (`audit_mark`); `record()` marks it from whichever task records (child tasks share
    the object); a request refused before any service recorded it is then recorded there."""

    recorded = False


audit_mark: contextvars.ContextVar[AuditMark | None] = contextvars.ContextVar("audit_mark", default=None)


def _to_row(entry: dict[str, Any]) -> dict[str, Any]:
    """The row of one entry: every column present (older spill files lack newer ones)."""
    unknown = set(entry) - set(ENTRY_FIELDS)
    if unknown:
        raise ValueError(f"not audit columns: {sorted(unknown)}")
    row = dict.fromkeys(ENTRY_FIELDS) | entry
    created = row.get("created_at")
    if isinstance(created, str):
        row["created_at"] = datetime.fromisoformat(created)
    for key, value in row.items():
        # PostgreSQL text cannot hold NUL, and a model (or a caller) can produce one: stored as-is
        # it fails the whole batch, again on every replay. Previews are previews; the exact text
        # is proven by messages_sha256, so U+FFFD stands in for the NUL.
        if isinstance(value, str) and "\x00" in value:
            row[key] = value.replace("\x00", "\ufffd")
    return row


def _to_json(entry: dict[str, Any]) -> str:
    e = dict(entry)
    if isinstance(e.get("created_at"), datetime):
        e["created_at"] = e["created_at"].isoformat()
    return json.dumps(e, separators=(",", ":"), ensure_ascii=False, default=str)


def refused_for_its_data(exc: BaseException) -> bool:
    """The store answered and refused these values (out of range, too long, not a number, a
    duplicate key), as opposed to being unreachable, slow or broken; the latter keeps records in
    the spill file for later, the former would fail the same way forever."""
    if isinstance(exc, sql_errors.DBAPIError):
        return isinstance(exc, sql_errors.DataError | sql_errors.IntegrityError)
    # Values the driver could not even bind (sqlite: an int past 64 bits, a string for a float),
    # and spill lines that are no audit entry (a missing id, unknown keys, not an object).
    return isinstance(exc, sql_errors.StatementError | ValueError | TypeError | OverflowError | LookupError)


class _StoreDown(Exception):
    pass


class AuditWriter:
    def __init__(self, store: Store, spill_path: Path, *, batch_size: int = 200, flush_interval_s: float = 0.5,
                 max_buffer: int = 10_000, retention_days: float = 30.0, store_timeout_s: float = 5.0) -> None:
        self.store = store
        self.spill_path = Path(spill_path)
        self.replay_path = self.spill_path.with_name(self.spill_path.name + ".replaying")
        self.rejected_path = self.spill_path.with_name(self.spill_path.name + ".rejected")
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_buffer = max_buffer
        self.retention_days = retention_days
        self.store_timeout_s = store_timeout_s
        self._buf: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._store_ok = True
        self._busy = False
        self._last_retention = 0.0
        self._replay_offset = 0  # bytes of the replay file already stored
        self._spilling = 0  # entries handed to the file thread, not yet on disk
        self._handoffs: set[asyncio.Future[Any]] = set()
        self._files = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-files")  # in order, one at a time
        self.last_error: str | None = None
        self.stats = {"recorded": 0, "written": 0, "spilled": 0, "replayed": 0, "store_errors": 0,
                      "rejected": 0, "dropped": 0}

    # -- the hot path ------------------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        self.stats["recorded"] += 1
        if (mark := audit_mark.get()) is not None:
            mark.recorded = True
        if len(self._buf) >= self.max_buffer:
            # The loop is behind (the store is slow or down): the buffer goes to the spill thread
            # as one batch. If the last such batch is still being written, the disk is failing or
            # cannot keep up: memory stays bounded, and this record is counted as dropped.
            if self._spilling:
                self._drop(1, "the audit buffer and the spill file are both full")
                return
            self._handoff(self._drain())
        self._buf.append(entry)
        if len(self._buf) >= self.batch_size:
            self._wake.set()

    def _drop(self, n: int, why: str) -> None:
        if not self.stats["dropped"]:
            log.error("audit records dropped: %s", why, extra={"event": "audit_dropped", "records": n})
        self.stats["dropped"] += n

    def _handoff(self, entries: list[dict[str, Any]]) -> None:
        """Spill `entries` on the file thread without waiting (record() never waits)."""
        try:
            future = asyncio.get_running_loop().run_in_executor(self._files, self._spill_sync, entries)
        except RuntimeError:  # no loop, or after close(): nothing can write it any more
            self._keep_or_drop(entries)
            return
        self._spilling += len(entries)
        self._handoffs.add(future)

        def done(f: asyncio.Future[Any]) -> None:
            self._handoffs.discard(f)
            self._spilling -= len(entries)
            if f.cancelled() or f.exception() is not None or not f.result():
                self._keep_or_drop(entries)
        future.add_done_callback(done)

    async def _files_do(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._files, fn, *args)

    async def settle(self) -> None:
        """Wait until the entries handed to the spill thread are on disk (or back in memory)."""
        while self._handoffs:
            await asyncio.gather(*list(self._handoffs), return_exceptions=True)
            await asyncio.sleep(0)  # let the done-callbacks run

    # -- spill file (file thread) -------------------------------------------------------------
    def _append(self, path: Path, lines: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())

    def _spill_sync(self, entries: list[dict[str, Any]]) -> bool:
        try:
            self._append(self.spill_path, "".join(_to_json(e) + "\n" for e in entries))
        except OSError:
            log.exception("audit spill failed", extra={"event": "audit_spill_failed", "records": len(entries)})
            return False
        self.stats["spilled"] += len(entries)
        return True

    async def _spill(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        self._spilling += len(entries)
        try:
            ok = await self._files_do(self._spill_sync, entries)
        finally:
            self._spilling -= len(entries)
        if not ok:
            self._keep_or_drop(entries)

    def _keep_or_drop(self, entries: list[dict[str, Any]]) -> None:
        """The disk refused a spill (and the store is down): keep what fits in the buffer for the
        next try, drop (counted) the rest; memory never grows past its bound."""
        room = max(0, self.max_buffer - len(self._buf))
        self._buf.extendleft(reversed(entries[:room]))
        if len(entries) > room:
            self._drop(len(entries) - room, "the store is down and the spill file cannot be written")

    def pending_spill(self) -> bool:
        return self.spill_path.exists() or self.replay_path.exists()

    # -- writing -----------------------------------------------------------------------------
    def _insert(self, entries: list[dict[str, Any]]) -> int:
        try:
            with self.store.transaction() as s:
                return repo.insert_new(s, [_to_row(e) for e in entries])
        finally:
            self._busy = False  # also when an abandoned (timed-out) insert finally returns

    async def _insert_one_batch(self, entries: list[dict[str, Any]]) -> None:
        """Store `entries` in one transaction. _StoreDown when the store is unreachable, slow or
        busy with a hung insert; the store's own exception when it refused the data."""
        if self._busy:  # the last insert hangs (a stalled database): do not pile up threads
            raise _StoreDown("an earlier insert still hangs")
        self._busy = True
        try:
            with anyio.fail_after(self.store_timeout_s):
                written = await anyio.to_thread.run_sync(self._insert, entries, abandon_on_cancel=True)
        except Exception as exc:
            if refused_for_its_data(exc):
                raise
            self.stats["store_errors"] += 1
            self.last_error = type(exc).__name__
            if self._store_ok:
                log.warning("audit store unavailable; spilling to %s", self.spill_path,
                            extra={"event": "audit_store_down", "error": type(exc).__name__})
            self._store_ok = False
            raise _StoreDown(type(exc).__name__) from exc
        if not self._store_ok:
            log.info("audit store available again", extra={"event": "audit_store_up"})
        self._store_ok = True
        self.stats["written"] += written

    async def _write(self, entries: list[dict[str, Any]]) -> bool:
        """True when the store took the batch, records it refused on their own set aside in the
        rejected file; False when the store is down (the caller keeps the batch on disk)."""
        try:
            await self._insert_one_batch(entries)
            return True
        except _StoreDown:
            return False
        except Exception:  # refused for its data: find the records at fault, one at a time
            pass
        for entry in entries:
            try:
                await self._insert_one_batch([entry])
            except _StoreDown:
                return False  # the ones stored already are recognised by id when retried
            except Exception as exc:
                await self._reject(entry, exc)
        return True

    async def _reject(self, entry: dict[str, Any], exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"[:500]
        line = _to_json({**entry, "rejected_because": reason}) + "\n"
        try:
            await self._files_do(self._append, self.rejected_path, line)
        except OSError:
            log.exception("audit rejected file not writable", extra={"event": "audit_rejected_unwritable"})
        self.stats["rejected"] += 1
        self.last_error = type(exc).__name__
        log.error("audit record refused by the store; set aside in %s", self.rejected_path,
                  extra={"event": "audit_record_rejected", "audit_id": entry.get("id"), "reason": reason})

    async def flush(self) -> None:
        while self._buf:
            batch = [self._buf.popleft() for _ in range(min(self.batch_size, len(self._buf)))]
            if not await self._write(batch):
                await self._spill(batch + self._drain())  # the store is down: do not hold the rest in memory
                return
        if self.pending_spill():
            await self._replay()

    def _drain(self) -> list[dict[str, Any]]:
        out = list(self._buf)
        self._buf.clear()
        return out

    # -- replay (file reads on the file thread, a batch at a time) ---------------------------
    def _claim_spill_file(self) -> bool:
        """Move the spill file aside for replay (new spills start a new file). False: nothing to replay."""
        if self.replay_path.exists():
            return True
        try:
            os.replace(self.spill_path, self.replay_path)
        except FileNotFoundError:
            return False
        self._replay_offset = 0
        return True

    def _read_batch(self, offset: int) -> tuple[list[dict[str, Any]], int, int]:
        """Up to `batch_size` entries from byte `offset`: (entries, next offset, unreadable lines)."""
        entries: list[dict[str, Any]] = []
        bad = 0
        with open(self.replay_path, "rb") as f:
            f.seek(offset)
            while len(entries) < self.batch_size:
                line = f.readline()
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    entries.append(json.loads(line))
                except ValueError:  # a torn last line after a crash mid-write
                    bad += 1
            return entries, f.tell(), bad

    async def _replay(self) -> None:
        if not await self._files_do(self._claim_spill_file):
            return
        replayed = 0
        while True:
            entries, next_offset, bad = await self._files_do(self._read_batch, self._replay_offset)
            if bad:
                log.warning("skipping unreadable audit spill line", extra={"event": "audit_spill_bad_line",
                                                                           "lines": bad})
            if not entries and next_offset == self._replay_offset:
                break
            if entries and not await self._write(entries):
                return  # keep the file and the offset; the next flush goes on from here
            self._replay_offset = next_offset
            replayed += len(entries)
        self.stats["replayed"] += replayed
        await self._files_do(self.replay_path.unlink, True)
        self._replay_offset = 0
        log.info("audit spill file replayed", extra={"event": "audit_spill_replayed", "records": replayed})

    # -- retention and the loop ----------------------------------------------------------------
    async def apply_retention(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)

        def run() -> int:
            with self.store.transaction() as s:
                return repo.delete_older_than(s, cutoff)
        deleted = await anyio.to_thread.run_sync(run)
        if deleted:
            log.info("audit retention", extra={"event": "audit_retention", "deleted": deleted})
        return deleted

    async def run(self) -> None:
        while True:
            try:
                with anyio.move_on_after(self.flush_interval_s):
                    await self._wake.wait()
                self._wake.clear()
                await self.flush()
                if self._store_ok and time.monotonic() - self._last_retention > 3600:
                    self._last_retention = time.monotonic()
                    await self.apply_retention()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("audit writer loop error", extra={"event": "audit_writer_error"})
                await asyncio.sleep(self.flush_interval_s)

    async def close(self) -> None:
        """Flush what is buffered; anything the store does not take goes to the spill file."""
        try:
            await self.settle()
            await self.flush()
        finally:
            await self.settle()
            if self._buf:
                await self._spill(self._drain())
            self._files.shutdown(wait=True)

    def status(self) -> dict[str, Any]:
        return {**self.stats, "buffered": len(self._buf), "spilling": self._spilling, "store_ok": self._store_ok,
                "last_error": self.last_error, "spill_pending": self.pending_spill()}
