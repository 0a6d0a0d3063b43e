"""Public image routes: `POST /generate-image` and OpenAI's `POST /v1/images/generations`.
Thin: `ImageService` does the work (its docstring has the API the jobs call too).

A caller that disconnects before its images are ready cancels the generation: the route writes
nothing until the work is done, so it listens for the ASGI server's `http.disconnect` (the body
was read already; `asgi.BodyLimit` passes `receive` through after replaying it) and cancels the
service call, which closes the worker stream; the worker stops between two denoising steps.
The audit row says 499 CLIENT_DISCONNECTED.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

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
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the answer


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T | Response:
    """`work`'s result, or an empty 499 when the client leaves first (`work` is cancelled)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        task.cancel()  # a no-op once the work is done
        await asyncio.wait((task, gone))
    if task.cancelled():
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return task.result()


@router.post("/generate-image", response_model=GenerateImageResponse)
async def generate_image(request: Request, body: GenerateImageRequest,
                         caller: str | None = Depends(caller_dep)) -> Any:
    """Images from a healthy image worker (synchronous): the worker's image fields, plus
    `enhance` to run the prompt through /enhance-prompt first."""
    async def work() -> GenerateImageResponse:
        out = await request.app.state.gateway.images.generate(body, request_id=request.state.request_id,
                                                              caller_key_id=caller)
        return GenerateImageResponse.model_validate(out)
    return await _unless_disconnected(request, work())


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
    return await _unless_disconnected(request, work())
