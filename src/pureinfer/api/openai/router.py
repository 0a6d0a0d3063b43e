"""OpenAI-compatible text surface: `POST /v1/chat/completions` (streaming and not), `GET /v1/models`.
Runs on the same `TextServing` as the seed endpoints, so admission, limits and the prompt proof
are identical; responses add `prompt_sha256` beside OpenAI's fields."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pureinfer.api.native.serving import PreparedText, TextServing
from pureinfer.api.openai.protocol import ChatCompletionRequest, model_card
from pureinfer.api.sse import sse_response


def build_openai_router(get_serving: Callable[[], TextServing]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai"])
    created_at = int(time.time())

    @router.get("/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(a, created_at) for a in get_serving().models()]}

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        serving = get_serving()
        body = body.resolved()
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        p = await serving.prepare("chat", body, request.state.request_id, messages=messages)
        cid = f"chatcmpl-{p.request_id}"
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return sse_response(_chunks(serving, p, cid, created, include_usage), p.request_id)
        c = await serving.complete(p)
        return JSONResponse({
            "id": cid, "object": "chat.completion", "created": created, "model": p.alias,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                         "finish_reason": c.finish_reason, "logprobs": None}],
            "usage": _usage(p, len(c.token_ids)),
            "prompt_sha256": p.prompt_sha256,
        })

    return router


def _usage(p: PreparedText, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": p.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": p.prompt_tokens + completion_tokens}


async def _chunks(serving: TextServing, p: PreparedText, cid: str, created: int,
                  include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": p.alias,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    yield chunk({"role": "assistant", "content": ""}, None)
    n = 0
    finish = "length"
    async for d in serving.deltas(p):
        n += len(d.token_ids)
        if d.text:
            yield chunk({"content": d.text}, None)
        if d.finish_reason:
            finish = d.finish_reason
    yield chunk({}, finish)
    if include_usage:
        yield {"id": cid, "object": "chat.completion.chunk", "created": created, "model": p.alias,
               "choices": [], "usage": _usage(p, n)}
