"""Template selection, its cache, and template writes (admin API, YAML import/export).

Selection levels (reported as `fallback_level`):
    0  exact (target_model, enhancer_model, job_type, use_case, content_mode)
    1  same, another enhancer model
    2  same target/job/use case, the other content mode (nsfw -> sfw always; sfw -> nsfw only with
       `allow_nsfw_fallback`, so a safe request is never silently served an nsfw prompt)
    3  the configured default template (`default_template`)
Nothing found: TEMPLATE_NOT_FOUND listing each level tried.

Cache: one immutable snapshot of every family's served version, tagged with the store's
generation. Each selection reads the generation (one indexed single-row SELECT); equal: the
snapshot answers (`cache_hit`), different: the snapshot is reloaded and swapped in one
assignment. Writers bump the generation in the same transaction as their change, so a process
can never serve a version older than a committed change it could have observed. If the store is
unreachable or slower than `store_timeout_s` the last snapshot keeps serving (logged), so a
database outage does not stop enhancement.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import anyio
import yaml

from pureinfer.db.store import Store
from pureinfer.errors import InternalError, PureInferError, TemplateNotFound
from pureinfer.gateway.templates import repository as repo
from pureinfer.gateway.templates.protocol import (
    LabelMove,
    Selection,
    SelectionKey,
    TemplateCreate,
    TemplateFamilyOut,
    TemplateFields,
    TemplateUpdate,
    TemplateView,
)

log = logging.getLogger("pureinfer.gateway.templates")


# Selections remembered per snapshot. The key is made of the caller's strings, so the memo is an
# LRU of this many keys: a caller sending endless new keys costs a selection each, not memory.
MEMO_SIZE = 1024


@dataclass(frozen=True)
class _Snapshot:
    generation: int
    templates: tuple[TemplateView, ...]
    by_name: dict[str, TemplateView]
    memo: OrderedDict[SelectionKey, tuple[TemplateView, int]] = field(default_factory=OrderedDict)


class TemplateSelector:
    """Pure selection over a list of served versions (no I/O): unit-testable on its own."""

    def __init__(self, default_template: str | None, allow_nsfw_fallback: bool) -> None:
        self.default_template = default_template
        self.allow_nsfw_fallback = allow_nsfw_fallback

    def levels(self, key: SelectionKey) -> list[dict[str, Any]]:
        base = {"target_model": key.target_model, "job_type": key.job_type, "use_case": key.use_case}
        other_mode = "sfw" if key.content_mode == "nsfw" else "nsfw"
        levels: list[dict[str, Any]] = [
            {"level": 0, **base, "enhancer_model": key.enhancer_model, "content_mode": key.content_mode},
            {"level": 1, **base, "enhancer_model": {"not": key.enhancer_model}, "content_mode": key.content_mode},
        ]
        if key.content_mode == "nsfw" or self.allow_nsfw_fallback:
            levels.append({"level": 2, **base, "enhancer_model": "any", "content_mode": other_mode})
        else:
            levels.append({"level": 2, "skipped": "sfw requests do not fall back to nsfw templates"})
        levels.append({"level": 3, "template_name": self.default_template}
                      if self.default_template else {"level": 3, "skipped": "no default template configured"})
        return levels

    def select(self, key: SelectionKey, templates: tuple[TemplateView, ...],
               by_name: dict[str, TemplateView]) -> tuple[TemplateView, int]:
        def pick(cands: list[TemplateView]) -> TemplateView | None:
            # Prefer the requested enhancer model, then the newest family/version.
            cands.sort(key=lambda t: (t.enhancer_model == key.enhancer_model, t.created_order), reverse=True)
            return cands[0] if cands else None

        same = [t for t in templates if t.target_model == key.target_model and t.job_type == key.job_type
                and t.use_case == key.use_case]
        found = pick([t for t in same if t.content_mode == key.content_mode and t.enhancer_model == key.enhancer_model])
        if found:
            return found, 0
        found = pick([t for t in same if t.content_mode == key.content_mode])
        if found:
            return found, 1
        if key.content_mode == "nsfw" or self.allow_nsfw_fallback:
            found = pick([t for t in same if t.content_mode != key.content_mode])
            if found:
                return found, 2
        if self.default_template and self.default_template in by_name:
            return by_name[self.default_template], 3
        raise TemplateNotFound(
            "No active template for this request on any fallback level",
            {"request": {"target_model": key.target_model, "enhancer_model": key.enhancer_model,
                         "job_type": key.job_type, "use_case": key.use_case, "content_mode": key.content_mode},
             "tried": self.levels(key)},
        )


class TemplateService:
    def __init__(self, store: Store, *, default_template: str | None = None,
                 allow_nsfw_fallback: bool = False, store_timeout_s: float = 1.0) -> None:
        self.store = store
        self.selector = TemplateSelector(default_template, allow_nsfw_fallback)
        self._snapshot: _Snapshot | None = None
        self._reload_lock = asyncio.Lock()
        self.store_timeout_s = store_timeout_s
        # SQLite in WAL mode: a one-row read never waits for a writer and takes tens of
        # microseconds, less than the thread hop it would need; a network database is read from
        # a thread, with a timeout after which the cached snapshot keeps serving.
        self._inline_reads = store.engine.dialect.name == "sqlite"
        self._reads_in_flight: dict[int, float] = {}
        self._read_ids = itertools.count()
        self.cache_stats = {"hits": 0, "misses": 0}  # selections, for /metrics


    # -- selection ---------------------------------------------------------------------------
    def _read_generation(self) -> int:
        token = next(self._read_ids)
        self._reads_in_flight[token] = time.monotonic()
        try:
            return repo.read_generation(self.store.engine)
        finally:
            self._reads_in_flight.pop(token, None)

    def _store_stalled(self) -> bool:
        """A generation read has been running past the timeout: the database hangs. Serve the
        snapshot at once instead of sending one more thread after it."""
        oldest = min(self._reads_in_flight.values(), default=None)
        return oldest is not None and time.monotonic() - oldest > self.store_timeout_s

    def _load(self) -> _Snapshot:
        with self.store.session() as s, s.begin():
            gen, views = repo.load_snapshot(s)
        return _Snapshot(gen, tuple(views), {v.template_name: v for v in views})

    async def select(self, key: SelectionKey) -> Selection:
        snap = self._snapshot
        try:
            if snap is not None and self._store_stalled():
                raise TimeoutError("template store stalled")
            if self._inline_reads:
                gen = self._read_generation()
            else:
                with anyio.fail_after(self.store_timeout_s):
                    gen = await anyio.to_thread.run_sync(self._read_generation, abandon_on_cancel=True)
        except Exception:
            if snap is None:
                log.exception("template store unreachable and nothing cached")
                raise InternalError("Template store unavailable", retry_after=5) from None
            log.warning("template store unreachable; serving cached templates", extra={"event": "template_cache_stale"})
            gen = snap.generation
        cache_hit = snap is not None and snap.generation == gen
        self.cache_stats["hits" if cache_hit else "misses"] += 1
        if not cache_hit:
            async with self._reload_lock:
                snap = self._snapshot
                if snap is None or snap.generation != gen:
                    snap = await anyio.to_thread.run_sync(self._load)
                    self._snapshot = snap  # one assignment: readers see the old or the new snapshot
        assert snap is not None
        memo = snap.memo.get(key)
        if memo is None:
            memo = self.selector.select(key, snap.templates, snap.by_name)
            snap.memo[key] = memo
            if len(snap.memo) > MEMO_SIZE:
                snap.memo.popitem(last=False)
        else:
            snap.memo.move_to_end(key)
        return Selection(template=memo[0], fallback_level=memo[1], cache_hit=cache_hit)

    # -- admin -------------------------------------------------------------------------------
    async def _write(self, fn: Any, *args: Any) -> Any:
        def run() -> Any:
            for attempt in range(5):
                try:
                    with self.store.transaction() as s:
                        return fn(s, *args)
                except PureInferError:
                    raise
                except Exception as exc:  # a lost race on (name, version): try again on fresh data
                    from sqlalchemy.exc import IntegrityError, OperationalError
                    if not isinstance(exc, IntegrityError | OperationalError) or attempt == 4:
                        raise
            raise AssertionError("unreachable")
        return await anyio.to_thread.run_sync(run)

    async def _read(self, fn: Any, *args: Any) -> Any:
        def run() -> Any:
            with self.store.session() as s:
                return fn(s, *args)
        return await anyio.to_thread.run_sync(run)

    async def create(self, body: TemplateCreate) -> TemplateFamilyOut:
        fields = body.model_dump(include=set(TemplateFields.model_fields))
        await self._write(repo.create, body.template_name, fields, body.labels)
        return await self.get(body.template_name)

    async def update(self, ref: str, body: TemplateUpdate) -> TemplateFamilyOut:
        name = await self._read(repo.resolve_name, ref)
        changes = body.model_dump(exclude={"labels"}, exclude_none=True)
        await self._write(repo.new_version, name, changes, body.labels)
        return await self.get(name)

    async def move_label(self, ref: str, body: LabelMove) -> TemplateFamilyOut:
        name = await self._read(repo.resolve_name, ref)
        await self._write(repo.move_label, name, body.label, body.version)
        return await self.get(name)

    async def deactivate(self, ref: str) -> TemplateFamilyOut:
        name = await self._read(repo.resolve_name, ref)
        await self._write(repo.set_active, name, False)
        return await self.get(name)

    async def get(self, ref: str) -> TemplateFamilyOut:
        def run(s: Any) -> TemplateFamilyOut:
            return repo.get_family(s, repo.resolve_name(s, ref))
        return await self._read(run)

    async def list_families(self, filters: dict[str, Any]) -> list[TemplateFamilyOut]:
        return await self._read(repo.list_families, filters)


# -- YAML import / export (used by the CLI; synchronous) ---------------------------------------
def import_yaml(store: Store, text: str) -> dict[str, int]:
    """Import `{templates: [...]}`. A family that does not exist is created; an entry whose content
    differs from the family's latest version becomes a new version; an identical one is left
    alone (importing twice changes nothing). `labels` in an entry point at the resulting version."""
    data = yaml.safe_load(text) or {}
    entries = data.get("templates", data) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ValueError("expected a list of templates under 'templates:'")
    counts = {"created": 0, "new_versions": 0, "unchanged": 0}
    for i, raw in enumerate(entries):
        raw = dict(raw)
        raw.pop("version", None)
        raw.pop("is_active", None)
        for k in ("id", "created_at", "updated_at"):
            raw.pop(k, None)
        try:
            body = TemplateCreate.model_validate(raw)
        except Exception as exc:
            raise ValueError(f"template #{i + 1} ({raw.get('template_name')!r}): {exc}") from None
        fields = body.model_dump(include=set(TemplateFields.model_fields))
        with store.transaction() as s:
            current = repo.latest_content(s, body.template_name)
            if current is None:
                repo.create(s, body.template_name, fields, body.labels)
                counts["created"] += 1
            elif current[1] != fields:
                repo.new_version(s, body.template_name, fields, body.labels)
                counts["new_versions"] += 1
            else:
                for label in body.labels:
                    repo.move_label(s, body.template_name, label, current[0])
                counts["unchanged"] += 1
    return counts


def export_yaml(store: Store, all_versions: bool = False) -> str:
    """Every family's latest version (or every version) with the labels pointing at it, in the
    format `import_yaml` reads."""
    with store.session() as s:
        fams = repo.all_versions(s)
    out = []
    for fam in fams:
        versions = fam.versions if all_versions else fam.versions[-1:]
        for v in versions:
            entry = {"template_name": v.template_name, "version": v.version}
            entry |= {k: getattr(v, k) for k in TemplateFields.model_fields}
            entry["labels"] = v.labels
            entry["is_active"] = v.is_active
            out.append(entry)
    return yaml.dump({"templates": out}, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (system prompts) as `|` blocks, so exports diff and review well."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str_representer)
