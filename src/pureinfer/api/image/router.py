"""Thin routes of the image surface; all logic lives in `ImageServing`. A client that disconnects
cancels its request (api/disconnect.py), which drops it from the engine's queue or batch."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from pureinfer.api.image.protocol import (
    ImageGenerateRequest,
    ImageGenerateResponse,
    OpenAIImage,
    OpenAIImageRequest,
    OpenAIImagesResponse,
)
from pureinfer.api.image.serving import ImageServing
from pureinfer.api.sse import sse_response
from pureinfer.disconnect import unless_disconnected
from pureinfer.errors import NotFound

ServingSource = ImageServing | Callable[[], ImageServing]


def _request_id(request: Request) -> str:
    return getattr(request.state, "request_id", None) or request.headers.get("x-request-id") or uuid.uuid4().hex


def build_image_router(serving: ServingSource, *, mount_generate: bool) -> APIRouter:
    """`serving` is the ImageServing or a callable returning it (models load after the app is built)."""
    get_serving: Callable[[], ImageServing] = serving if callable(serving) else (lambda: serving)  # type: ignore[assignment,return-value]
    router = APIRouter(tags=["image"])

    if mount_generate:
        @router.post("/generate", response_model=ImageGenerateResponse)
        async def generate(body: ImageGenerateRequest, request: Request) -> Response:
            """Generate images (the native contract, plus num_images, scheduler, output, truncate,
            and `stream` for per-step progress as Server-Sent Events)."""
            if body.stream:
                return await native_answer(get_serving(), body, request)
            return await unless_disconnected(request.receive, native_answer(get_serving(), body, request))

    @router.post("/v1/images/generations", response_model=OpenAIImagesResponse, tags=["openai"])
    async def openai_images(body: OpenAIImageRequest, request: Request) -> Response:
        """OpenAI's images API on the same engine; `seed` and SDXL knobs are extensions."""
        return await unless_disconnected(request.receive, _openai_answer(get_serving(), body, request))

    @router.get("/files/{key:path}", response_class=FileResponse)
    async def files(key: str) -> FileResponse:
        """Files of the local store, by the unguessable key a response gave out."""
        store = get_serving().store
        path_for = getattr(store, "path_for", None)
        if path_for is None:
            raise NotFound("This worker stores files in object storage; use the URL from the response")
        path = path_for(key)
        media = "image/webp" if path.suffix == ".webp" else "image/png"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=86400"})

    return router


async def native_answer(serving: ImageServing, body: ImageGenerateRequest, request: Request) -> Response:
    """JSON, or with `stream: true` SSE (admitted and validated before the stream starts, so a
    refusal keeps its HTTP status). Either way a client that leaves cancels the generation: the
    JSON path through `unless_disconnected` (by the caller), the stream when its response ends."""
    if body.stream:
        g = serving.admit(body, _request_id(request), base_url=str(request.base_url))
        return sse_response(g.events(), g.request_id, on_close=g.aclose)
    return JSONResponse(await serving.generate(body, _request_id(request), base_url=str(request.base_url)))


async def _openai_answer(serving: ImageServing, body: OpenAIImageRequest, request: Request) -> Response:
    result = await serving.generate(body.to_generate_request(), _request_id(request), size_field="size",
                                    base_url=str(request.base_url))
    return JSONResponse(OpenAIImagesResponse(created=int(time.time()), data=[
        OpenAIImage(url=i["url"], b64_json=i["b64_json"]) for i in result["images"]]).model_dump())
