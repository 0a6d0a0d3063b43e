"""SQL access for templates. Synchronous; the service calls it from a worker thread.

Every writing function first bumps the generation counter (`UPDATE ... SET generation =
generation + 1`). Doing it *first* also serialises template writers across processes: on
PostgreSQL the row lock makes a concurrent writer wait, so two updates of one family cannot
both compute the same next version; on SQLite the UPDATE takes the database write lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session

from pureinfer.db.models import TemplateGeneration, TemplateLabel, TemplateVersion, utcnow
from pureinfer.db.store import as_utc
from pureinfer.errors import InvalidPayload, NotFound
from pureinfer.gateway.bounds import as_row_id
from pureinfer.gateway.templates.protocol import (
    LATEST,
    TemplateFamilyOut,
    TemplateFields,
    TemplateOut,
    TemplateView,
)

CONTENT_FIELDS = tuple(TemplateFields.model_fields)


def bump_generation(s: Session) -> None:
    s.execute(update(TemplateGeneration).where(TemplateGeneration.id == 1)
              .values(generation=TemplateGeneration.generation + 1))


def get_generation(s: Session) -> int:
    return int(s.execute(select(TemplateGeneration.generation).where(TemplateGeneration.id == 1)).scalar_one())


def read_generation(engine: Engine) -> int:
    """The per-selection check, on a bare connection: a quarter of the ORM session's cost
    (measured ~0.1 ms vs ~0.45 ms on SQLite), and it runs on every request."""
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT generation FROM template_generation WHERE id = 1").scalar_one())


def resolve_name(s: Session, ref: str) -> str:
    """`{id}` in the admin API is a template name, or the numeric id of any of its versions."""
    row_id = as_row_id(ref)
    if row_id is not None:
        name = s.execute(select(TemplateVersion.template_name).where(TemplateVersion.id == row_id)).scalar()
    else:
        name = s.execute(select(TemplateVersion.template_name)
                         .where(TemplateVersion.template_name == ref).limit(1)).scalar()
    if name is None:
        raise NotFound(f"Template {ref!r} not found", {"template": ref})
    return name


def _content(row: TemplateVersion) -> dict[str, Any]:
    """The row's `TemplateFields` (the column `metadata` is the attribute `metadata_`: SQLAlchemy
    reserves `metadata`)."""
    data = {f: getattr(row, f) for f in CONTENT_FIELDS if f != "metadata"}
    data["metadata"] = row.metadata_ or {}
    return data


def _insert_version(s: Session, name: str, version: int, fields: dict[str, Any]) -> TemplateVersion:
    now = utcnow()
    row = TemplateVersion(
        template_name=name, version=version, is_active=True, created_at=now, updated_at=now,
        metadata_=fields.get("metadata") or {}, **{k: v for k, v in fields.items() if k != "metadata"},
    )
    s.add(row)
    s.flush()
    return row


def _set_label(s: Session, name: str, label: str, version: int) -> None:
    row = s.get(TemplateLabel, (name, label))
    if row is None:
        s.add(TemplateLabel(template_name=name, label=label, version=version, updated_at=utcnow()))
    else:
        row.version = version
        row.updated_at = utcnow()
    s.flush()


def _max_version(s: Session, name: str) -> int | None:
    return s.execute(select(func.max(TemplateVersion.version))
                     .where(TemplateVersion.template_name == name)).scalar()


def create(s: Session, name: str, fields: dict[str, Any], labels: Sequence[str]) -> TemplateVersion:
    bump_generation(s)
    if _max_version(s, name) is not None:
        raise InvalidPayload.field("template_name", f"template {name!r} already exists; PUT /templates/{name} adds a version")
    row = _insert_version(s, name, 1, fields)
    for label in {LATEST, *labels}:
        _set_label(s, name, label, 1)
    return row


def new_version(s: Session, name: str, changes: dict[str, Any], labels: Sequence[str]) -> TemplateVersion:
    """A new version = the latest version with `changes` applied."""
    bump_generation(s)
    latest = _max_version(s, name)
    if latest is None:
        raise NotFound(f"Template {name!r} not found", {"template": name})
    base = s.execute(select(TemplateVersion).where(TemplateVersion.template_name == name,
                                                   TemplateVersion.version == latest)).scalar_one()
    fields = _content(base) | {k: v for k, v in changes.items() if v is not None}
    row = _insert_version(s, name, latest + 1, fields)
    for label in {LATEST, *labels}:
        _set_label(s, name, label, latest + 1)
    return row


def move_label(s: Session, name: str, label: str, version: int) -> None:
    bump_generation(s)
    exists = s.execute(select(TemplateVersion.id).where(TemplateVersion.template_name == name,
                                                        TemplateVersion.version == version)).scalar()
    if exists is None:
        raise InvalidPayload.field("version", f"template {name!r} has no version {version}")
    _set_label(s, name, label, version)


def set_active(s: Session, name: str, active: bool) -> int:
    bump_generation(s)
    result = s.execute(update(TemplateVersion).where(TemplateVersion.template_name == name)
                       .values(is_active=active, updated_at=utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass
class _Family:
    name: str
    versions: list[TemplateVersion]
    labels: dict[str, int]

    def served(self) -> TemplateVersion | None:
        """The version selection serves: the one labelled production if active, else the
        highest active version."""
        active = {v.version: v for v in self.versions if v.is_active}
        prod = self.labels.get("production")
        if prod is not None and prod in active:
            return active[prod]
        return active[max(active)] if active else None


def _families(s: Session, names: Sequence[str] | None = None, active_only: bool = False) -> list[_Family]:
    q = select(TemplateVersion).order_by(TemplateVersion.template_name, TemplateVersion.version)
    lq = select(TemplateLabel)
    if names is not None:
        q = q.where(TemplateVersion.template_name.in_(names))
        lq = lq.where(TemplateLabel.template_name.in_(names))
    if active_only:
        q = q.where(TemplateVersion.is_active.is_(True))
    labels: dict[str, dict[str, int]] = {}
    for lab in s.execute(lq).scalars():
        labels.setdefault(lab.template_name, {})[lab.label] = lab.version
    fams: dict[str, _Family] = {}
    for row in s.execute(q).scalars():
        fams.setdefault(row.template_name, _Family(row.template_name, [], labels.get(row.template_name, {})))
        fams[row.template_name].versions.append(row)
    return list(fams.values())


def _identity(row: TemplateVersion) -> dict[str, Any]:
    return {"id": row.id, "template_name": row.template_name, "version": row.version, **_content(row)}


def to_out(row: TemplateVersion, labels: dict[str, int]) -> TemplateOut:
    return TemplateOut(
        **_identity(row), is_active=row.is_active,
        labels=sorted(k for k, v in labels.items() if v == row.version),
        created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at),  # type: ignore[arg-type]
    )


def family_out(f: _Family) -> TemplateFamilyOut:
    served = f.served()
    return TemplateFamilyOut(template_name=f.name, served_version=served.version if served else None,
                             labels=dict(sorted(f.labels.items())),
                             versions=[to_out(v, f.labels) for v in f.versions])


def get_family(s: Session, name: str) -> TemplateFamilyOut:
    fams = _families(s, [name])
    if not fams:
        raise NotFound(f"Template {name!r} not found", {"template": name})
    return family_out(fams[0])


def list_families(s: Session, filters: dict[str, Any]) -> list[TemplateFamilyOut]:
    """Families whose served version (or, with include_inactive, any version) matches the filters."""
    include_inactive = bool(filters.pop("include_inactive", False))
    out = []
    for f in _families(s):
        served = f.served()
        probe = served or (f.versions[-1] if include_inactive else None)
        if probe is None:
            continue
        if all(getattr(probe, k) == v for k, v in filters.items() if v is not None):
            out.append(family_out(f))
    return out


def load_snapshot(s: Session) -> tuple[int, list[TemplateView]]:
    """The generation and every family's served version, read in that order in one transaction.

    The generation is read *first*: rows read afterwards are at least as new as it, so a cache
    labelled with this generation is never older than the generation says (at worst it is newer,
    which only costs one extra reload)."""
    generation = get_generation(s)
    views = []
    for f in _families(s, active_only=True):
        v = f.served()
        if v is None:
            continue
        views.append(TemplateView(**_identity(v), created_order=v.id))
    return generation, views


def all_versions(s: Session) -> list[TemplateFamilyOut]:
    return [family_out(f) for f in _families(s)]


def latest_content(s: Session, name: str) -> tuple[int, dict[str, Any]] | None:
    latest = _max_version(s, name)
    if latest is None:
        return None
    row = s.execute(select(TemplateVersion).where(TemplateVersion.template_name == name,
                                                  TemplateVersion.version == latest)).scalar_one()
    return latest, _content(row)
