"""Public routes: `POST /enhance-prompt`, `POST /chat`. Thin: the service does the work."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from pureinfer.gateway.auth import caller_dep
from pureinfer.gateway.enhance.protocol import ChatRequest, EnhanceRequest, EnhanceResponse

router = APIRouter(tags=["public"])


@router.post("/enhance-prompt", response_model=EnhanceResponse)
async def enhance_prompt(request: Request, body: EnhanceRequest,
                         caller: str | None = Depends(caller_dep)) -> EnhanceResponse:
    return await request.app.state.gateway.enhance.enhance(body, request.state.request_id, caller)


@router.post("/chat", response_model=None)
async def chat(request: Request, body: ChatRequest, caller: str | None = Depends(caller_dep)) -> Any:
    result = await request.app.state.gateway.enhance.chat(body, request.state.request_id, caller)
    if isinstance(result, tuple):
        stream, headers = result
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
    return result
