"""Helpers for the gateway tests: a uvicorn server in a thread, a controllable fake worker that
speaks the worker contract (Bearer key + HMAC signature, envelopes, SSE), and request helpers."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, StreamingResponse

from pureinfer.errors import Unauthorized
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.security import SIGNATURE_HEADER, TIMESTAMP_HEADER, ApiKeys, SignatureVerifier, presented_key

WORKER_KEY = "worker-key"
WORKER_SECRET = "worker-secret"
CALLER_KEY = "caller-key"
ADMIN_KEY = "admin-key"
REG_SECRET = "registration-secret"




@dataclass
class FakeControl:
    """What the fake worker does next. `script` is consumed first: each item is an HTTP status to
    answer with (503 -> WORKER_OVERLOADED envelope, 400 -> TOKEN_LIMIT_EXCEEDED, 500 -> OUT_OF_MEMORY...)."""

    name: str = "fake"
    script: list[int] = field(default_factory=list)
    always: int | None = None
    delay_s: float = 0.0
    gate: threading.Event | None = None  # when given, work is answered only once it is set
    stream_delay_s: float = 0.0  # between SSE events
    break_stream_after: int | None = None  # raise after this many SSE events: the connection is cut mid-body
    redirect_to: str | None = None
    ready: bool = True
    # Refuse message contents holding these special tokens, as a worker does (INVALID_PAYLOAD
    # naming messages[i].content).
    special_tokens: tuple[str, ...] = ()
    calls: list[dict[str, Any]] = field(default_factory=list)
    health_calls: int = 0


ENVELOPES = {
    503: ("WORKER_OVERLOADED", "Admission queue full"),
    400: ("TOKEN_LIMIT_EXCEEDED", "prompt + max_tokens exceed the context"),
    401: ("UNAUTHORIZED", "nope"),
    500: ("INTERNAL_ERROR", "Internal error"),
    507: ("OUT_OF_MEMORY", "device out of memory"),
}


def fake_worker_app(ctl: FakeControl, *, key: str = WORKER_KEY, secret: str = WORKER_SECRET) -> FastAPI:
    app = FastAPI()
    keys = ApiKeys([key])
    verifier = SignatureVerifier(secret)

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        ctl.health_calls += 1
        return JSONResponse({"ready": ctl.ready}, status_code=200 if ctl.ready else 503)

    async def work(request: Request, endpoint: str) -> Any:
        body = await request.body()
        try:
            keys.check(presented_key({k.lower(): v for k, v in request.headers.items()}))
            verifier.verify("POST", request.url.path, body, request.headers.get(TIMESTAMP_HEADER),
                            request.headers.get(SIGNATURE_HEADER))
        except Unauthorized as exc:
            return JSONResponse({"success": False, "error": exc.message, "error_code": "UNAUTHORIZED"}, 401)
        payload = json.loads(body)
        ctl.calls.append({"endpoint": endpoint, "payload": payload, "request_id": request.headers.get("x-request-id"),
                          "host": request.headers.get("host")})
        if ctl.redirect_to:
            return RedirectResponse(ctl.redirect_to, status_code=307)
        for i, m in enumerate(payload.get("messages", [])):
            found = [t for t in ctl.special_tokens if t in m["content"]]
            if found:
                msg = f"contains the tokenizer's special token {found[0]!r}; message text is never a control token"
                return JSONResponse({"success": False, "error": f"messages[{i}].content: {msg}",
                                     "details": {"fields": [{"field": f"messages[{i}].content", "message": msg}]},
                                     "error_code": "INVALID_PAYLOAD", "suggested_action": "Remove it",
                                     "request_id": "w"}, 400)
        status = ctl.script.pop(0) if ctl.script else ctl.always
        if ctl.delay_s:
            await asyncio.sleep(ctl.delay_s)
        while ctl.gate is not None and not ctl.gate.is_set():
            await asyncio.sleep(0.01)
        if status and status >= 300:
            code, msg = ENVELOPES.get(status, ("INTERNAL_ERROR", "x"))
            http_status = 503 if status == 507 else status
            return JSONResponse({"success": False, "error": msg, "details": {"from": ctl.name}, "error_code": code,
                                 "suggested_action": "worker says so", "request_id": "w"}, http_status,
                                headers={"Retry-After": "3"} if http_status == 503 else None)
        user = payload["messages"][-1]["content"]
        text = f"[{ctl.name}] enhanced: {user}"
        if payload.get("stream"):
            async def events() -> Any:
                for i, word in enumerate(text.split(" ")):
                    if ctl.stream_delay_s:
                        await asyncio.sleep(ctl.stream_delay_s)
                    if i == ctl.break_stream_after:  # as a killed worker: the chunked body never ends
                        raise ConnectionResetError("the fake worker dies mid-stream")
                    yield f"data: {json.dumps({'text': word + ' '})}\n\n".encode()
                final = {'text': '', 'finish_reason': 'stop', 'tokens_generated': 5, 'prompt_tokens': 9,
                         'prompt_sha256': "1" * 64, 'model_used': 'qwen_instruct', 'seed': payload.get('seed', 4242)}
                yield f"data: {json.dumps(final)}\n\n".encode()
                yield b"data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        out = {"success": True, "generation_time": 0.01, "tokens_generated": 5, "prompt_tokens": 9,
               "prompt_sha256": "0" * 64, "model_used": payload.get("model", "qwen_instruct"), "finish_reason": "stop",
               "request_id": request.headers.get("x-request-id"), "pure_inference": True,
               "no_prompt_overrides": True, "seed": payload.get("seed", 4242),
               "execution_metadata": {"worker_type": "chat", "architecture": "pure_inference_engine"}}
        out["enhanced_prompt" if endpoint == "enhance" else "response"] = text
        return out

    @app.post("/enhance")
    async def enhance(request: Request) -> Any:
        return await work(request, "enhance")

    @app.post("/chat")
    async def chat(request: Request) -> Any:
        return await work(request, "chat")

    return app


TEMPLATE = {
    "template_name": "sdxl_instruct_sfw", "enhancer_model": "qwen_instruct", "target_model": "sdxl",
    "job_type": "image", "use_case": "enhancement", "content_mode": "sfw",
    "system_prompt": "You write SDXL prompts.", "token_limit": 75,
}


def tpl(**overrides: Any) -> dict[str, Any]:
    return {**TEMPLATE, **overrides}


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CALLER = {"Authorization": f"Bearer {CALLER_KEY}"}


def gateway_settings(tmp_path: Path, database_url: str, **overrides: Any) -> GatewaySettings:
    base: dict[str, Any] = dict(
        cache_dir=tmp_path / f"gw-{uuid.uuid4().hex[:6]}", database_url=database_url,
        api_keys=[CALLER_KEY], admin_keys=[ADMIN_KEY], worker_api_key=WORKER_KEY,
        worker_signing_secret=WORKER_SECRET, registration_secret=REG_SECRET,
        health_interval_s=0.2, registry_refresh_s=0.2, backoff_initial_s=0.01, backoff_max_s=0.05,
        audit_flush_interval_s=0.05, connect_timeout_s=1.0, read_timeout_s=10.0, request_timeout_s=15.0,
        breaker_cooldown_s=30.0,
    )
    base.update(overrides)
    return GatewaySettings(**base)
