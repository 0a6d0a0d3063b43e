"""Public routes: `POST /enhance-prompt`, `POST /chat`. Thin: the service does the work."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from pureinfer.gateway.auth import caller_dep
from pureinfer.gateway.prompting.protocol import ChatRequest, EnhanceRequest, EnhanceResponse
from pureinfer.gateway.prompting.service import StreamRelay

router = APIRouter(tags=["public"])


class RelayResponse(StreamingResponse):
    """A StreamingResponse that always closes its relay, even if cancelled before streaming."""

    def __init__(self, relay: StreamRelay, headers: dict[str, str]) -> None:
        super().__init__(relay.chunks(), media_type="text/event-stream", headers=headers)
        self.relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.relay.close(interrupted=True)


@router.post("/enhance-prompt", response_model=EnhanceResponse)
async def enhance_prompt(request: Request, body: EnhanceRequest,
                         caller: str | None = Depends(caller_dep)) -> EnhanceResponse:
    return await request.app.state.gateway.prompting.enhance(body, request.state.request_id, caller)


@router.post("/chat", response_model=None)
async def chat(request: Request, body: ChatRequest, caller: str | None = Depends(caller_dep)) -> Any:
    result = await request.app.state.gateway.prompting.chat(body, request.state.request_id, caller)
    if isinstance(result, tuple):
        relay, headers = result
        return RelayResponse(relay, headers)
    return result
