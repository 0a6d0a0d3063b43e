"""Thin routes of A1111's API; `A1111Serving` translates, `ImageServing` does the work. Errors on
these paths take A1111's shape (`protocol.a1111_error`, registered by the worker app for the
`/sdapi/` prefix). A client that disconnects cancels its request (api/disconnect.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response

from pureinfer.api.a1111.serving import A1111Serving
from pureinfer.api.image.serving import ImageServing
from pureinfer.disconnect import unless_disconnected
from pureinfer.wire.a1111 import JobBoard, Txt2ImgRequest

PREFIX = "/sdapi/v1"


def build_a1111_router(get_image: Callable[[], ImageServing]) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["a1111"])
    board = JobBoard()  # one per app: the progress route reads what txt2img writes

    def serving() -> A1111Serving:
        return A1111Serving(get_image(), board)

    @router.post("/txt2img")
    async def txt2img(body: Txt2ImgRequest, request: Request) -> Response:
        """Text to image: base64 PNGs (each with its "parameters" chunk), `parameters`, and `info`
        (a JSON string) with `seed` and `all_seeds`."""
        async def answer() -> Response:
            return JSONResponse(await serving().txt2img(body, request.state.request_id))
        return await unless_disconnected(request.receive, answer())

    @router.get("/sd-models")
    async def sd_models() -> list[dict[str, Any]]:
        """The one SDXL model this worker serves."""
        return serving().sd_models()

    @router.get("/samplers")
    async def samplers() -> list[dict[str, Any]]:
        """A1111's names of this model's schedulers."""
        return serving().samplers()

    @router.get("/progress")
    async def progress() -> dict[str, Any]:
        """The current txt2img job's progress and how many are in flight."""
        return board.progress()

    @router.get("/options")
    async def get_options() -> dict[str, Any]:
        """The settings that mean something here."""
        return serving().options()

    @router.post("/options")
    async def set_options(options: dict[str, Any] = Body(...)) -> None:  # noqa: B008
        """Settings may be set to the values they have; the checkpoint only to this worker's model."""
        serving().set_options(options)

    return router
