"""Public image routes: `POST /generate-image` and OpenAI's `POST /v1/images/generations`.
Thin: `ImageService` does the work (its docstring has the API the jobs call too)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request

from pureinfer.gateway.auth import caller_dep
from pureinfer.gateway.images.protocol import (
    GenerateImageRequest,
    GenerateImageResponse,
    OpenAIImage,
    OpenAIImageRequest,
    OpenAIImagesResponse,
)

router = APIRouter(tags=["public"])


@router.post("/generate-image", response_model=GenerateImageResponse)
async def generate_image(request: Request, body: GenerateImageRequest,
                         caller: str | None = Depends(caller_dep)) -> GenerateImageResponse:
    """Images from a healthy image worker (synchronous): the worker's image fields, plus
    `enhance` to run the prompt through /enhance-prompt first."""
    out = await request.app.state.gateway.images.generate(body, request_id=request.state.request_id,
                                                          caller_key_id=caller)
    return GenerateImageResponse.model_validate(out)


@router.post("/v1/images/generations", response_model=OpenAIImagesResponse, tags=["openai"])
async def openai_images(request: Request, body: OpenAIImageRequest,
                        caller: str | None = Depends(caller_dep)) -> OpenAIImagesResponse:
    """OpenAI's images API through the gateway; `seed`, SDXL knobs and `enhance` are extensions."""
    out = await request.app.state.gateway.images.generate(
        body.to_generate_request(), request_id=request.state.request_id, caller_key_id=caller,
        endpoint="images-generations")
    revised = out["enhancement"]["enhanced_prompt"] if out.get("enhancement") else None
    return OpenAIImagesResponse(created=int(time.time()), data=[
        OpenAIImage(url=i.get("url"), b64_json=i.get("b64_json"), revised_prompt=revised) for i in out["images"]])
