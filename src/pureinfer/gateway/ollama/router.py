"""Ollama's routes on the gateway (`/api/chat`, `/api/generate`, `/api/tags`, `/api/show`,
`/api/version`), for callers with a caller key. Thin: `OllamaGateway` translates, the prompting
service does the work. Errors are the gateway's envelope, whose `error` is the message, as
Ollama's `{"error": "..."}` is; an error after a stream began is one last NDJSON line of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from pureinfer import jsonline
from pureinfer.errors import InvalidPayload
from pureinfer.gateway.auth import caller_dep
from pureinfer.gateway.ollama.protocol import OllamaChatRequest, OllamaGenerateRequest, ShowRequest
from pureinfer.gateway.ollama.service import OllamaGateway
from pureinfer.gateway.prompting.service import StreamRelay
from pureinfer.wire.ollama import Kind

router = APIRouter(prefix="/api", tags=["ollama"])


def _service(request: Request) -> OllamaGateway:
    gw = request.app.state.gateway
    return OllamaGateway(gw.prompting, gw.registry)


class NdjsonRelayResponse(StreamingResponse):
    """NDJSON lines translated from a worker's stream; the relay (worker connection, in-flight
    count, audit row) is closed in every path, also when cancelled before streaming began."""

    def __init__(self, lines: AsyncIterator[dict[str, Any]], relay: StreamRelay, headers: dict[str, str]) -> None:
        async def encoded() -> AsyncIterator[bytes]:
            async for obj in lines:
                yield jsonline.dumps(obj).encode() + b"\n"

        super().__init__(encoded(), media_type="application/x-ndjson", headers=headers)
        self.relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.relay.close(interrupted=True)


async def _respond(request: Request, kind: Kind, body: OllamaChatRequest | OllamaGenerateRequest,
                   caller: str | None) -> Response:
    svc = _service(request)
    rid = request.state.request_id
    result = await svc.run(kind, body, rid, caller)
    if isinstance(result, tuple):
        relay, headers = result
        return NdjsonRelayResponse(svc.lines(kind, body.model, relay, rid, headers), relay, headers)
    return JSONResponse(result)


@router.post("/chat")
async def chat(request: Request, body: OllamaChatRequest, caller: str | None = Depends(caller_dep)) -> Response:
    """Ollama's chat as the gateway's /chat: the template's system prompt, then the caller's turns."""
    return await _respond(request, "chat", body, caller)


@router.post("/generate")
async def generate(request: Request, body: OllamaGenerateRequest,
                   caller: str | None = Depends(caller_dep)) -> Response:
    """Ollama's generate as the gateway's /chat with `prompt` as the message."""
    return await _respond(request, "generate", body, caller)


@router.get("/tags")
async def tags(request: Request, caller: str | None = Depends(caller_dep)) -> dict[str, Any]:
    """The text models of the registered workers."""
    return _service(request).tags()


@router.post("/show")
async def show(request: Request, body: ShowRequest, caller: str | None = Depends(caller_dep)) -> dict[str, Any]:
    """One model's details and Ollama's default parameters, as the gateway sends them."""
    name = body.model_name()
    if name is None:
        raise InvalidPayload.field("model", "give the model's name")
    return _service(request).show(name)


@router.get("/version")
async def version(caller: str | None = Depends(caller_dep)) -> dict[str, str]:
    """This gateway's version (pureinfer's, not an Ollama release)."""
    return OllamaGateway.version()
