"""Public image routes: `POST /generate-image` and OpenAI's `POST /v1/images/generations`.
Thin: `ImageService` does the work (its docstring has the API the jobs call too).

A caller that disconnects before its images are ready cancels the generation: the route writes
nothing until the work is done, so it listens for the ASGI server's `http.disconnect` (the body
was read already; `asgi.BodyLimit` passes `receive` through after replaying it) and cancels the
service call, which closes the worker stream; the worker stops between two denoising steps.
The audit row says 499 CLIENT_DISCONNECTED.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request

from pureinfer.disconnect import unless_disconnected
from pureinfer.gateway.auth import caller_dep
from pureinfer.gateway.images.protocol import (
    GenerateImageRequest,
    GenerateImageResponse,
    OpenAIImage,
    OpenAIImageRequest,
    OpenAIImagesResponse,
)

router = APIRouter(tags=["public"])
T = TypeVar("T")


@router.post("/generate-image", response_model=GenerateImageResponse)
async def generate_image(request: Request, body: GenerateImageRequest,
                         caller: str | None = Depends(caller_dep)) -> Any:
    """Images from a healthy image worker (synchronous): the worker's image fields, plus
    `enhance` to run the prompt through /enhance-prompt first."""
    async def work() -> GenerateImageResponse:
        out = await request.app.state.gateway.images.generate(body, request_id=request.state.request_id,
                                                              caller_key_id=caller)
        return GenerateImageResponse.model_validate(out)
    return await unless_disconnected(request.receive, work())


@router.post("/v1/images/generations", response_model=OpenAIImagesResponse, tags=["openai"])
async def openai_images(request: Request, body: OpenAIImageRequest,
                        caller: str | None = Depends(caller_dep)) -> Any:
    """OpenAI's images API through the gateway; `seed`, SDXL knobs and `enhance` are extensions."""
    async def work() -> OpenAIImagesResponse:
        out = await request.app.state.gateway.images.generate(
            body.to_generate_request(), request_id=request.state.request_id, caller_key_id=caller,
            endpoint="images-generations")
        revised = out["enhancement"]["enhanced_prompt"] if out.get("enhancement") else None
        return OpenAIImagesResponse(created=int(time.time()), data=[
            OpenAIImage(url=i.get("url"), b64_json=i.get("b64_json"), revised_prompt=revised)
            for i in out["images"]])
    return await unless_disconnected(request.receive, work())
