"""Routes of Ollama's API. Thin: the request converts itself, `OllamaServing` answers; a route
only chooses NDJSON or one object and owns the closing of what it started.

Errors are our envelope, whose `error` is the message, as Ollama's `{"error": "..."}` is (its
clients read that field); an unknown model is Ollama's 404. An error after a stream began is
one last NDJSON line of the same shape (api/ndjson.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pureinfer.api.native.serving import TextGeneration, TextServing
from pureinfer.api.ndjson import ndjson_response
from pureinfer.api.ollama.protocol import OllamaChatRequest, OllamaGenerateRequest
from pureinfer.api.ollama.serving import OllamaServing
from pureinfer.disconnect import unless_disconnected
from pureinfer.errors import InvalidPayload
from pureinfer.wire.ollama import Kind, ShowRequest


async def _respond(serving: OllamaServing, kind: Kind, body: OllamaChatRequest | OllamaGenerateRequest,
                   request: Request) -> Response:
    g = await serving.start(kind, body, request.state.request_id)
    if g is None:
        return JSONResponse(serving.loaded(kind, body.model))
    if body.stream:
        return ndjson_response(serving.stream(kind, body.model, g), g.valid.request_id, on_close=g.aclose)
    async with g:
        return await unless_disconnected(request.receive, _json(serving, kind, body.model, g))


async def _json(serving: OllamaServing, kind: Kind, model: str, g: TextGeneration) -> Response:
    return JSONResponse(await serving.complete(kind, model, g))


def build_ollama_router(get_serving: Callable[[], TextServing]) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["ollama"])

    @router.post("/chat")
    async def chat(body: OllamaChatRequest, request: Request) -> Response:
        """Ollama's chat: the messages through the model's own chat template, as /chat runs them."""
        return await _respond(OllamaServing(get_serving()), "chat", body, request)

    @router.post("/generate")
    async def generate(body: OllamaGenerateRequest, request: Request) -> Response:
        """Ollama's generate: `system` + `prompt` through the chat template, or `raw` as sent."""
        return await _respond(OllamaServing(get_serving()), "generate", body, request)

    @router.get("/tags")
    async def tags() -> dict[str, Any]:
        """The text models this worker serves, by the names the other routes take."""
        return OllamaServing(get_serving()).tags()

    @router.post("/show")
    async def show(body: ShowRequest) -> dict[str, Any]:
        """One model's details and default parameters."""
        name = body.model_name()
        if name is None:
            raise InvalidPayload.field("model", "give the model's name")
        return OllamaServing(get_serving()).show(name)

    @router.get("/version")
    async def version() -> dict[str, str]:
        """This server's version (pureinfer's, not an Ollama release)."""
        return OllamaServing.version()

    return router
