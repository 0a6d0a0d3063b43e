"""Admin routes for templates. Thin: the service does the work."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from pureinfer.gateway.auth import admin_dep
from pureinfer.gateway.templates.protocol import (
    NAME_PATTERN,
    LabelMove,
    TemplateCreate,
    TemplateFamilyOut,
    TemplateUpdate,
)
from pureinfer.gateway.templates.service import TemplateService

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
