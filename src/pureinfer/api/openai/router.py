"""OpenAI-compatible text surface: `POST /v1/chat/completions` (streaming and not), `GET /v1/models`.
Runs on the same `TextServing` as the native endpoints, so admission, validation, limits and the
prompt proof are identical; responses add `prompt_sha256` and `seed` beside OpenAI's fields (the
streaming answer carries `seed` on its last choice chunk)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from pureinfer.api.native.serving import TextGeneration, TextServing
from pureinfer.api.native.validation import ValidTextRequest
from pureinfer.api.openai.protocol import ChatCompletionRequest, model_card
from pureinfer.api.sse import sse_response
from pureinfer.disconnect import unless_disconnected


def build_openai_router(get_serving: Callable[[], TextServing]) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai"])
    created_at = int(time.time())

    @router.get("/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(a, created_at) for a in get_serving().models()]}

    @router.post("/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        g = await get_serving().generate("openai", body, request.state.request_id)
        created = int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return sse_response(_chunks(g, created, include_usage), g.valid.request_id, on_close=g.aclose)
        async with g:
            return await unless_disconnected(request.receive, _completion(g, created))

    return router


async def _completion(g: TextGeneration, created: int) -> Response:
    c = await g.complete()
    v = g.valid
    return JSONResponse({
        "id": f"chatcmpl-{v.request_id}", "object": "chat.completion", "created": created, "model": v.alias,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                     "finish_reason": c.finish_reason, "logprobs": None}],
        "usage": _usage(v, len(c.token_ids)),
        "prompt_sha256": v.prompt_sha256,
        "seed": v.params.seed,
    })


def _usage(v: ValidTextRequest, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": v.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": v.prompt_tokens + completion_tokens}


async def _chunks(g: TextGeneration, created: int, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
    v = g.valid

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": f"chatcmpl-{v.request_id}", "object": "chat.completion.chunk", "created": created,
                "model": v.alias, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    yield chunk({"role": "assistant", "content": ""}, None)
    n = 0
    finish = "length"
    async for d in g.deltas():
        n += len(d.token_ids)
        if d.text:
            yield chunk({"content": d.text}, None)
        if d.finish_reason:
            finish = d.finish_reason
    yield {**chunk({}, finish), "prompt_sha256": v.prompt_sha256, "seed": v.params.seed}
    if include_usage:
        yield {**chunk({}, None), "choices": [], "usage": _usage(v, n)}
