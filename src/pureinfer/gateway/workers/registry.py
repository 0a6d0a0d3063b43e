"""The worker registry of one gateway process: the shared list lives in the store (so every
gateway process routes to workers registered with any of them); health, requests in flight and
circuit state are this process's own view and live here.

Routing: among workers of the right type (an `all` worker serves every type) that are healthy,
not silent past `heartbeat_timeout_s` (self-registered ones) and whose circuit lets a request
through, prefer those serving the requested model, then the fewest requests in flight; ties are
taken in turn (round robin), so equal workers share sequential work evenly and the choice is a
rule a test can check, not a draw. None: WORKER_UNAVAILABLE with Retry-After.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx

from pureinfer.db.store import Store, as_utc
from pureinfer.errors import InvalidPayload, WorkerUnavailable
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.gateway.workers import repository as repo
from pureinfer.gateway.workers.breaker import CircuitBreaker
from pureinfer.gateway.workers.protocol import WorkerOut
from pureinfer.gateway.workers.transport import AddressPins
from pureinfer.gateway.workers.urls import UrlPolicy, ValidatedUrl

log = logging.getLogger("pureinfer.gateway.workers")


@dataclass
class WorkerState:
    id: str
    url: str
    worker_type: str
    models: list[str]
    source: str
    breaker: CircuitBreaker
    created_at: datetime | None = None
    last_heartbeat: datetime | None = None
    healthy: bool = False
    in_flight: int = 0
    last_error: str | None = None
    last_check: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def serves(self, worker_type: str) -> bool:
        return self.worker_type == worker_type or self.worker_type == "all"

    def text_models(self) -> list[str]:
        """Its text models: from its registration document when it has one (a role-`all` worker
        lists its image model among `models` too), else `models` of a worker that serves text."""
        if isinstance(self.info.get("text_models"), dict):
            return [str(m) for m in self.info["text_models"]]
        return list(self.models) if self.serves("chat") and self.worker_type != "all" else [
            m for m in self.models if m not in self.image_models()]

    def image_models(self) -> list[str]:
        """Its image model, likewise (the registration document's `image.model`, else `models`)."""
        image = self.info.get("image")
        if isinstance(image, dict) and isinstance(image.get("model"), str):
            return [image["model"]]
        return list(self.models) if self.worker_type == "image" else []

    def out(self) -> WorkerOut:
        return WorkerOut(id=self.id, url=self.url, worker_type=self.worker_type, models=self.models,
                         source=self.source, created_at=self.created_at, last_heartbeat=self.last_heartbeat,
                         healthy=self.healthy, in_flight=self.in_flight, circuit=self.breaker.state.value,
                         last_error=self.last_error)


class WorkerRegistry:
    def __init__(self, store: Store, settings: GatewaySettings, http: httpx.AsyncClient,
                 policy: UrlPolicy, pins: AddressPins) -> None:
        self.store = store
        self.settings = settings
        self.http = http  # connects to `pins` only (transport.py)
        self.policy = policy
        self.pins = pins
        self.workers: dict[str, WorkerState] = {}
        self._last_refresh = 0.0
        self._turn = itertools.count()  # the round robin among equally loaded workers

    # -- store sync --------------------------------------------------------------------------
    def _new_state(self, row: Any) -> WorkerState:
        return WorkerState(id=row.id, url=row.url, worker_type=row.worker_type, models=list(row.models or []),
                           source=row.source, created_at=as_utc(row.created_at),
                           last_heartbeat=as_utc(row.last_heartbeat), info=dict(row.info or {}),
                           breaker=CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_cooldown_s))

    async def refresh(self) -> list[WorkerState]:
        """Merge the store's list into ours; returns workers new to this process."""
        def load() -> list[Any]:
            with self.store.session() as s:
                return repo.all_workers(s)
        rows = await anyio.to_thread.run_sync(load)
        seen, new = set(), []
        for row in rows:
            seen.add(row.id)
            st = self.workers.get(row.id)
            if st is None:
                st = self._new_state(row)
                self.workers[row.id] = st
                new.append(st)
            else:
                st.url, st.worker_type, st.models = row.url, row.worker_type, list(row.models or [])
                st.last_heartbeat = as_utc(row.last_heartbeat)
        for wid in list(self.workers):
            if wid not in seen:
                del self.workers[wid]
        self._last_refresh = time.monotonic()
        return new

    async def _validate(self, url: str) -> ValidatedUrl:
        """Validate the URL (resolving its name) and pin the addresses validated: calls connect
        to these and nowhere else until the next validation."""
        checked = await anyio.to_thread.run_sync(self.policy.validate, url)
        if self.pins.pin(checked.host, checked.port, checked.addresses):
            log.info("worker address pinned", extra={"event": "worker_address", "url": checked.url,
                                                     "addresses": list(checked.addresses)})
        return checked

    async def add(self, url: str, worker_type: str, models: list[str], source: str,
                  info: dict[str, Any] | None = None) -> WorkerState:
        url = (await self._validate(url)).url

        def write() -> Any:
            with self.store.transaction() as s:
                return repo.upsert(s, url, worker_type, models, source, info, heartbeat=source == "registered")
        row = await anyio.to_thread.run_sync(write)
        st = self.workers.get(row.id)
        if st is None:
            st = self.workers[row.id] = self._new_state(row)
        else:
            st.url, st.worker_type, st.models = row.url, row.worker_type, list(row.models or [])
            st.last_heartbeat = as_utc(row.last_heartbeat)
        if source == "registered":
            st.healthy, st.last_error = True, None  # it just called us
        else:
            await self.check(st)
        log.info("worker added", extra={"event": "worker_added", "worker_id": st.id, "url": url,
                                        "worker_type": worker_type, "source": source, "healthy": st.healthy})
        return st

    async def heartbeat(self, wid: str) -> None:
        def write() -> None:
            with self.store.transaction() as s:
                repo.heartbeat(s, wid)
        await anyio.to_thread.run_sync(write)
        st = self.workers.get(wid)
        if st is not None:
            st.last_heartbeat = datetime.now(UTC)

    async def remove(self, wid: str) -> None:
        def write() -> None:
            with self.store.transaction() as s:
                repo.remove(s, wid)
        await anyio.to_thread.run_sync(write)
        self.workers.pop(wid, None)

    # -- health ------------------------------------------------------------------------------
    async def check(self, st: WorkerState) -> bool:
        """GET /health/ready (redirects not followed). The URL is validated (and its addresses
        pinned) again first, so a name that now resolves to a refused address leaves rotation."""
        try:
            await self._validate(st.url)
            timeout = httpx.Timeout(self.settings.connect_timeout_s, read=max(self.settings.connect_timeout_s, 2.0))
            resp = await self.http.get(st.url + "/health/ready", timeout=timeout)
            ok = resp.status_code == 200
            st.last_error = None if ok else f"health/ready answered {resp.status_code}"
        except InvalidPayload as exc:
            ok, st.last_error = False, f"url refused: {exc.message}"
        except httpx.HTTPError as exc:
            ok, st.last_error = False, f"health check failed: {type(exc).__name__}"
        if ok != st.healthy:
            log.info("worker health changed", extra={"event": "worker_health", "worker_id": st.id,
                                                     "healthy": ok, "reason": st.last_error})
        st.healthy = ok
        st.last_check = time.monotonic()
        return ok

    async def check_all(self) -> None:
        if self.workers:
            await asyncio.gather(*(self.check(st) for st in list(self.workers.values())))

    async def run(self) -> None:
        """Background loop: refresh from the store and health-check every worker."""
        while True:
            try:
                if time.monotonic() - self._last_refresh >= self.settings.registry_refresh_s:
                    await self.refresh()
                await self.check_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("registry refresh failed", exc_info=True, extra={"event": "registry_error"})
            await asyncio.sleep(self.settings.health_interval_s)

    # -- routing -----------------------------------------------------------------------------
    def _fresh(self, st: WorkerState) -> bool:
        if st.source != "registered" or st.last_heartbeat is None:
            return True
        return datetime.now(UTC) - st.last_heartbeat <= timedelta(seconds=self.settings.heartbeat_timeout_s)

    def pick(self, worker_type: str, model: str | None, exclude: set[str] | frozenset[str] = frozenset()) -> WorkerState:
        typed = [w for w in self.workers.values() if w.serves(worker_type)]
        live = [w for w in typed if w.healthy and self._fresh(w)]
        open_ = [w for w in live if not w.breaker.available()]
        ready = [w for w in live if w.breaker.available()]
        if not ready:
            if open_:
                wait = min(w.breaker.retry_after() for w in open_)
                raise WorkerUnavailable(
                    f"Every {worker_type} worker has its circuit open after repeated failures",
                    {"worker_type": worker_type, "workers": [w.id for w in open_], "circuit": "open"},
                    retry_after=max(1, int(wait + 0.999)))
            raise WorkerUnavailable(
                f"No healthy {worker_type} worker", {"worker_type": worker_type, "known": len(typed)},
                retry_after=max(1, int(self.settings.health_interval_s + 0.999)))
        others = [w for w in ready if w.id not in exclude]
        pool = others or ready  # a single worker is retried; several: fail over first
        if model:
            with_model = [w for w in pool if model in w.models]
            pool = with_model or pool
        least = min(w.in_flight for w in pool)
        ties = [w for w in pool if w.in_flight == least]
        chosen = ties[next(self._turn) % len(ties)]
        chosen.breaker.acquire()
        return chosen
