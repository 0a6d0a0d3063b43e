"""Wire models of the template admin API and the template view the rest of the gateway uses.
No FastAPI or SQLAlchemy here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from pureinfer.gateway.bounds import MAX_SQL_INT, StoredText

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$"
LABEL_PATTERN = r"^[a-z0-9][a-z0-9_.\-]{0,99}$"
CONTENT_MODES = ("sfw", "nsfw")
PRODUCTION = "production"
LATEST = "latest"

Label = Annotated[str, Field(pattern=LABEL_PATTERN)]


class TemplateFields(BaseModel):
    """The content of one version (everything that makes two versions differ). The one place
    these fields are written: the update, output and cache models below derive from it, and the
    SQL model has a column for each (a test checks)."""

    model_config = ConfigDict(extra="forbid")

    enhancer_model: StoredText = Field(min_length=1, max_length=100)
    target_model: StoredText = Field(min_length=1, max_length=100)
    job_type: StoredText = Field(min_length=1, max_length=50)
    use_case: StoredText = Field(min_length=1, max_length=50)
    content_mode: str = Field(pattern=r"^(sfw|nsfw)$")
    system_prompt: StoredText = Field(min_length=1, max_length=100_000)
    token_limit: int = Field(ge=1, le=32_768)
    metadata: dict[str, Any] = Field(default_factory=dict)


def _all_optional(model: type[BaseModel], name: str) -> type[BaseModel]:
    """`model` with every field optional (default None) and its constraints kept."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        optional = FieldInfo.merge_field_infos(info, default=None)
        optional.default_factory = None
        assert info.annotation is not None
        fields[field_name] = (info.annotation | None, optional)
    return create_model(name, __config__=model.model_config, **fields)


class TemplateCreate(TemplateFields):
    template_name: str = Field(pattern=NAME_PATTERN)
    labels: list[Label] = Field(default_factory=list, max_length=20, description="labels to point at this first version")


class TemplateUpdate(_all_optional(TemplateFields, "TemplateChanges")):  # type: ignore[misc]
    """`PUT /templates/{id}`: a new version made of the current latest version with these
    fields replaced. Nothing is edited in place."""

    labels: list[Label] = Field(default_factory=list, max_length=20, description="labels to move to the new version")


class LabelMove(BaseModel):
    """`POST /templates/{id}/labels`: point `label` at `version` (a rollback when it is older)."""

    model_config = ConfigDict(extra="forbid")

    label: Label
    version: int = Field(ge=1, le=MAX_SQL_INT)


class TemplateImport(BaseModel):
    """`POST /templates:import`: YAML as `pureinfer templates export` writes it."""

    model_config = ConfigDict(extra="forbid")

    yaml: str = Field(min_length=1, max_length=1_000_000)


class TemplateImportOut(BaseModel):
    created: int
    new_versions: int
    unchanged: int


class _Version(TemplateFields):
    """One stored version: its content and where it sits."""

    id: int
    template_name: str
    version: int


class TemplateOut(_Version):
    is_active: bool
    labels: list[str]
    created_at: datetime
    updated_at: datetime


class TemplateFamilyOut(BaseModel):
    template_name: str
    served_version: int | None = Field(description="the version selection serves: production, else highest active")
    labels: dict[str, int]
    versions: list[TemplateOut]


class TemplateView(_Version):
    """The version a family serves, as held in the selection cache (immutable)."""

    model_config = ConfigDict(frozen=True)

    created_order: int  # row id: later versions/families sort later


@dataclass(frozen=True, slots=True)
class SelectionKey:
    target_model: str
    enhancer_model: str
    job_type: str
    use_case: str
    content_mode: str


@dataclass(frozen=True, slots=True)
class Selection:
    template: TemplateView
    fallback_level: int
    cache_hit: bool
    tried: list[dict[str, Any]] = field(default_factory=list)
