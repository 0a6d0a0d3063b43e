"""A1111's routes on the gateway (`/sdapi/v1/txt2img`, `sd-models`, `samplers`, `progress`,
`options`), for callers with a caller key. Thin: `A1111Gateway` translates, the image service does
the work. Errors on these paths take A1111's shape (registered by the gateway app)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request

from pureinfer.disconnect import unless_disconnected
from pureinfer.gateway.a1111.service import A1111Gateway
from pureinfer.gateway.auth import caller_dep
from pureinfer.wire.a1111 import Txt2ImgRequest

PREFIX = "/sdapi/v1"
router = APIRouter(prefix=PREFIX, tags=["a1111"])


def _service(request: Request) -> A1111Gateway:
    gw = request.app.state.gateway
    return A1111Gateway(gw.images, gw.registry, gw.a1111_jobs)


@router.post("/txt2img")
async def txt2img(request: Request, body: Txt2ImgRequest, caller: str | None = Depends(caller_dep)) -> Any:
    """Text to image on a healthy image worker: base64 PNGs, `parameters`, `info` (a JSON string).
    A caller that leaves first cancels the generation, as on /generate-image (audit: 499)."""
    return await unless_disconnected(request.receive, _service(request).txt2img(body, request.state.request_id, caller))


@router.get("/sd-models")
async def sd_models(request: Request, caller: str | None = Depends(caller_dep)) -> list[dict[str, Any]]:
    """The image models of the registered workers."""
    return _service(request).sd_models()


@router.get("/samplers")
async def samplers(caller: str | None = Depends(caller_dep)) -> list[dict[str, Any]]:
    """A1111's names of the image workers' schedulers."""
    return A1111Gateway.samplers()


@router.get("/progress")
async def progress(request: Request, caller: str | None = Depends(caller_dep)) -> dict[str, Any]:
    """The oldest txt2img job in flight through this gateway, and how many there are."""
    return _service(request).board.progress()


@router.get("/options")
async def get_options(request: Request, caller: str | None = Depends(caller_dep)) -> dict[str, Any]:
    """The settings that mean something here."""
    return _service(request).options()


@router.post("/options")
async def set_options(request: Request, options: dict[str, Any] = Body(...),  # noqa: B008
                      caller: str | None = Depends(caller_dep)) -> None:
    """Settings may be set to the values they have; the checkpoint to a model a worker serves."""
    _service(request).set_options(options)
