"""Routes of the native text API. Thin: validation is FastAPI's and `TextServing`'s, the work the
engine's; a route only chooses JSON or SSE and owns the closing of what it started."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pureinfer.api.native.protocol import ChatRequest, GenerateRequest, Surface, TextResponse
from pureinfer.api.native.serving import CompletionBuilder, TextGeneration, TextServing
from pureinfer.api.sse import sse_response
from pureinfer.disconnect import unless_disconnected


async def respond(serving: TextServing, surface: Surface, body: ChatRequest | GenerateRequest,
                  request: Request) -> Response:
    g = await serving.generate(surface, body, request.state.request_id)
    if body.stream:
        return sse_response(_events(serving, g), g.valid.request_id, on_close=g.aclose)
    async with g:
        return await unless_disconnected(request.receive, _json(serving, g))


async def _json(serving: TextServing, g: TextGeneration) -> Response:
    return JSONResponse(serving.response(g, await g.complete()).wire())


async def _events(serving: TextServing, g: TextGeneration) -> AsyncIterator[dict[str, Any]]:
    """Token deltas as `{"text": ...}`, then one event with every response field."""
    builder = CompletionBuilder()
    async for delta in g.deltas():
        builder.add(delta)
        if delta.text:
            yield {"text": delta.text, "request_id": g.valid.request_id}
    yield serving.response(g, builder.build(g.valid.admitted_at)).wire()


def build_text_router(get_serving: Callable[[], TextServing], *, mount_generate: bool = True) -> APIRouter:
    router = APIRouter(tags=["text"])

    @router.post("/chat", response_model=TextResponse, response_model_exclude_none=True)
    async def chat(body: ChatRequest, request: Request) -> Response:
        """Pure-inference chat: the messages run through the model's chat template as they are."""
        return await respond(get_serving(), "chat", body, request)

    @router.post("/enhance", response_model=TextResponse, response_model_exclude_none=True)
    async def enhance(body: ChatRequest, request: Request) -> Response:
        """Prompt enhancement: the caller (the gateway) supplies the system prompt."""
        return await respond(get_serving(), "enhance", body, request)

    if mount_generate:
        @router.post("/generate", response_model=TextResponse, response_model_exclude_none=True)
        async def generate(body: GenerateRequest, request: Request) -> Response:
            """Generic generation: `messages` through the chat template, or a raw `prompt`."""
            return await respond(get_serving(), "generate", body, request)

    return router
