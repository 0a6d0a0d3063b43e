"""Admin routes for templates. Thin: the service does the work."""

from __future__ import annotations

from typing import Annotated

import anyio
import yaml
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import PlainTextResponse

from pureinfer.errors import InvalidPayload
from pureinfer.gateway.auth import admin_dep
from pureinfer.gateway.templates.protocol import (
    NAME_PATTERN,
    LabelMove,
    TemplateCreate,
    TemplateFamilyOut,
    TemplateImport,
    TemplateImportOut,
    TemplateUpdate,
)
from pureinfer.gateway.templates.service import TemplateService, export_yaml, import_yaml

router = APIRouter(prefix="/templates", tags=["templates"], dependencies=[Depends(admin_dep)])
# A template name, or the numeric id of one of its versions.
Ref = Annotated[str, Path(pattern=NAME_PATTERN, description="template name or version id")]


def _svc(request: Request) -> TemplateService:
    return request.app.state.gateway.templates


@router.get("", response_model=list[TemplateFamilyOut])
async def list_templates(request: Request, template_name: str | None = None, target_model: str | None = None,
                         enhancer_model: str | None = None, job_type: str | None = None,
                         use_case: str | None = None, content_mode: str | None = None,
                         include_inactive: bool = False) -> list[TemplateFamilyOut]:
    return await _svc(request).list_families({
        "template_name": template_name, "target_model": target_model, "enhancer_model": enhancer_model,
        "job_type": job_type, "use_case": use_case, "content_mode": content_mode,
        "include_inactive": include_inactive,
    })


@router.post("", response_model=TemplateFamilyOut, status_code=201)
async def create_template(request: Request, body: TemplateCreate) -> TemplateFamilyOut:
    return await _svc(request).create(body)


# `:export` / `:import` (custom methods, AIP-136 style): a colon cannot occur in a template name, so
# these never shadow a template called "export".
@router.get(":export", response_class=PlainTextResponse,
            responses={200: {"content": {"application/yaml": {}}, "description": "the templates as YAML"}})
async def export_templates(request: Request, all_versions: bool = False) -> PlainTextResponse:
    """Every template's latest version (or every version) as YAML, as `pureinfer templates export`."""
    text = await anyio.to_thread.run_sync(export_yaml, request.app.state.gateway.store, all_versions)
    return PlainTextResponse(text, media_type="application/yaml",
                             headers={"Content-Disposition": 'attachment; filename="templates.yaml"'})


@router.post(":import", response_model=TemplateImportOut)
async def import_templates(request: Request, body: TemplateImport) -> TemplateImportOut:
    """Import YAML as `pureinfer templates import`: new families, new versions where content
    changed, nothing for identical entries."""
    try:
        counts = await anyio.to_thread.run_sync(import_yaml, request.app.state.gateway.store, body.yaml)
    except (ValueError, TypeError, yaml.YAMLError) as exc:
        raise InvalidPayload("The YAML is not a list of templates",
                             {"fields": [{"field": "yaml", "message": str(exc)[:1000]}]}) from None
    return TemplateImportOut(**counts)


@router.get("/{ref}", response_model=TemplateFamilyOut)
async def get_template(request: Request, ref: Ref) -> TemplateFamilyOut:
    return await _svc(request).get(ref)


@router.put("/{ref}", response_model=TemplateFamilyOut)
async def update_template(request: Request, ref: Ref, body: TemplateUpdate) -> TemplateFamilyOut:
    return await _svc(request).update(ref, body)


@router.post("/{ref}/labels", response_model=TemplateFamilyOut)
async def move_label(request: Request, ref: Ref, body: LabelMove) -> TemplateFamilyOut:
    return await _svc(request).move_label(ref, body)


@router.delete("/{ref}", response_model=TemplateFamilyOut)
async def deactivate_template(request: Request, ref: Ref) -> TemplateFamilyOut:
    return await _svc(request).deactivate(ref)
