"""The audit writer: `record()` never blocks, never raises and never loses an entry.

    record() -> bounded in-memory buffer --(batch, every flush interval or batch size)--> store
                      |  buffer full                         |  store fails / times out
                      v                                      v
                 spill file (JSON lines, fsync'd)  <---------+
    spill file --(replayed when the store answers again; ids make replay idempotent)--> store

An insert that hangs (a stalled database) is abandoned after `store_timeout_s` and its batch
spilled; no second insert starts while one still hangs, so threads do not pile up. The ids make a
late commit of the abandoned insert and the replay of its spilled copy agree.
A database outage therefore costs neither latency (requests only append to a deque) nor
memory (bounded by `max_buffer`) nor records (they wait in the spill file). Retention deletes
records older than `retention_days` about once an hour. Hand-written because no library offers
a durable, bounded, batching sink for SQLAlchemy; the parts are a deque, a file and a loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio

from pureinfer.db.store import Store
from pureinfer.gateway.audit import repository as repo

log = logging.getLogger("pureinfer.gateway.audit")


def _to_row(entry: dict[str, Any]) -> dict[str, Any]:
    row = dict(entry)
    if isinstance(row.get("created_at"), str):
        row["created_at"] = datetime.fromisoformat(row["created_at"])
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
    return json.dumps(e, separators=(",", ":"), ensure_ascii=False)


class AuditWriter:
    def __init__(self, store: Store, spill_path: Path, *, batch_size: int = 200, flush_interval_s: float = 0.5,
                 max_buffer: int = 10_000, retention_days: float = 30.0, store_timeout_s: float = 5.0) -> None:
        self.store = store
        self.spill_path = Path(spill_path)
        self.replay_path = self.spill_path.with_name(self.spill_path.name + ".replaying")
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
        self.last_error: str | None = None
        self.stats = {"recorded": 0, "written": 0, "spilled": 0, "replayed": 0, "store_errors": 0}

    # -- the hot path ------------------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        self.stats["recorded"] += 1
        if len(self._buf) >= self.max_buffer:
            self._spill([entry])
            return
        self._buf.append(entry)
        if len(self._buf) >= self.batch_size:
            self._wake.set()

    # -- spill file --------------------------------------------------------------------------
    def _spill(self, entries: list[dict[str, Any]]) -> None:
        try:
            self.spill_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.spill_path, "a", encoding="utf-8") as f:
                f.write("".join(_to_json(e) + "\n" for e in entries))
                f.flush()
                os.fsync(f.fileno())
            self.stats["spilled"] += len(entries)
        except OSError:
            # Disk and database both gone: keep them in memory beyond the bound rather than drop.
            log.exception("audit spill failed", extra={"event": "audit_spill_failed"})
            self._buf.extendleft(reversed(entries))

    def pending_spill(self) -> bool:
        return self.spill_path.exists() or self.replay_path.exists()

    # -- writing -----------------------------------------------------------------------------
    def _insert(self, entries: list[dict[str, Any]]) -> int:
        try:
            with self.store.transaction() as s:
                return repo.insert_new(s, [_to_row(e) for e in entries])
        finally:
            self._busy = False  # also when an abandoned (timed-out) insert finally returns

    async def _write(self, entries: list[dict[str, Any]]) -> bool:
        if self._busy:  # the last insert hangs (a stalled database): do not pile up threads
            self._store_ok = False
            return False
        self._busy = True
        try:
            with anyio.fail_after(self.store_timeout_s):
                written = await anyio.to_thread.run_sync(self._insert, entries, abandon_on_cancel=True)
        except Exception as exc:
            self.stats["store_errors"] += 1
            self.last_error = type(exc).__name__
            if self._store_ok:
                log.warning("audit store unavailable; spilling to %s", self.spill_path,
                            extra={"event": "audit_store_down", "error": type(exc).__name__})
            self._store_ok = False
            return False
        if not self._store_ok:
            log.info("audit store available again", extra={"event": "audit_store_up"})
        self._store_ok = True
        self.stats["written"] += written
        return True

    async def flush(self) -> None:
        while self._buf:
            batch = [self._buf.popleft() for _ in range(min(self.batch_size, len(self._buf)))]
            if not await self._write(batch):
                self._spill(batch)
                self._spill(self._drain())  # the store is down: do not hold the rest in memory
                return
        if self.pending_spill():
            await self._replay()

    def _drain(self) -> list[dict[str, Any]]:
        out = list(self._buf)
        self._buf.clear()
        return out

    async def _replay(self) -> None:
        if not self.replay_path.exists():
            try:
                os.replace(self.spill_path, self.replay_path)
            except FileNotFoundError:
                return
        with open(self.replay_path, encoding="utf-8") as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
        entries = []
        for ln in lines:
            try:
                entries.append(json.loads(ln))
            except ValueError:  # a torn last line after a crash mid-write
                log.warning("skipping unreadable audit spill line", extra={"event": "audit_spill_bad_line"})
        for i in range(0, len(entries), self.batch_size):
            if not await self._write(entries[i:i + self.batch_size]):
                return  # keep the file; the next flush tries again (ids make it idempotent)
        self.stats["replayed"] += len(entries)
        self.replay_path.unlink(missing_ok=True)
        log.info("audit spill file replayed", extra={"event": "audit_spill_replayed", "records": len(entries)})

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
            await self.flush()
        finally:
            if self._buf:
                self._spill(self._drain())

    def status(self) -> dict[str, Any]:
        return {**self.stats, "buffered": len(self._buf), "store_ok": self._store_ok, "last_error": self.last_error,
                "spill_pending": self.pending_spill()}
