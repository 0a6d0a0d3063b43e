"""Routes of the seed's text API. Thin: validation is FastAPI's, the work is `TextServing`'s."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pureinfer.api.native.protocol import ChatRequest, Endpoint, GenerateRequest, TextResponse
from pureinfer.api.native.serving import CompletionBuilder, PreparedText, TextServing
from pureinfer.api.sse import sse_response


def request_id_of(request: Request) -> str:
    return request.state.request_id


async def respond(serving: TextServing, endpoint: Endpoint, body: ChatRequest | GenerateRequest,
                  request: Request) -> Response:
    prepared = await serving.prepare_seed(endpoint, body, request_id_of(request))
    if body.stream:
        return sse_response(_events(serving, prepared), prepared.request_id)
    completion = await serving.complete(prepared)
    return JSONResponse(serving.response(prepared, completion).wire())


async def _events(serving: TextServing, p: PreparedText) -> AsyncIterator[dict[str, Any]]:
    """Token deltas as `{"text": ...}`, then one event with every response field."""
    builder = CompletionBuilder()
    async for delta in serving.deltas(p):
        builder.add(delta)
        if delta.text:
            yield {"text": delta.text, "request_id": p.request_id}
    yield serving.response(p, builder.build(p)).wire()


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
