"""Enhance-prompt and chat: select the template, build the messages (the only place prompts are
assembled), call a worker through the client, log the seed's edge-function events, record the
audit entry (successes and failures alike)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pureinfer.errors import InternalError, InvalidPayload, PureInferError, as_pureinfer_error
from pureinfer.gateway.audit.writer import AuditWriter
from pureinfer.gateway.prompting.protocol import (
    ChatRequest,
    EnhanceRequest,
    EnhanceResponse,
    ExecutionMetadata,
)
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.gateway.templates.protocol import Selection
from pureinfer.gateway.templates.service import TemplateService
from pureinfer.gateway.workers.client import WorkerCall, WorkerClient

log = logging.getLogger("pureinfer.gateway.prompting")


# A worker names a message's field as messages[i].content (or messages.i.content, pydantic's path).
_MESSAGE_FIELD = re.compile(r"^messages(?:\[(\d+)\]|\.(\d+))\.content$")


def in_callers_terms(exc: InvalidPayload, req: EnhanceRequest | ChatRequest,
                     selection: Selection | None) -> PureInferError:
    """A worker's INVALID_PAYLOAD about `messages[i].content` (e.g. special tokens in a message)
    named the messages the gateway built; the caller sent `prompt`, `message` or `history`, so
    the error names those. The template's own system prompt (messages[0]) is no caller's doing:
    that is an internal error naming the template, for an admin to fix."""
    details = exc.details if isinstance(exc.details, dict) else {}
    fields = details.get("fields")
    if not isinstance(fields, list):
        return exc
    out = _caller_fields(exc, details, fields, req, selection)
    out.worker_id = getattr(exc, "worker_id", None)  # type: ignore[attr-defined]  # for the audit row
    return out


def _caller_fields(exc: InvalidPayload, details: dict[str, Any], fields: list[Any],
                   req: EnhanceRequest | ChatRequest, selection: Selection | None) -> PureInferError:
    mapped: list[dict[str, Any]] = []
    for item in fields:
        match = _MESSAGE_FIELD.match(str(item.get("field", ""))) if isinstance(item, dict) else None
        if match is None:
            mapped.append(item)
            continue
        index = int(match.group(1) or match.group(2))
        field = req.caller_field(index)
        if field is None:
            t = selection.template if selection else None
            return InternalError(
                "The worker refused the template's system prompt",
                {"template_name": t.template_name if t else None, "template_version": t.version if t else None,
                 "worker_message": item.get("message")},
                suggested_action="An admin must fix this template's system_prompt; retry after that")
        mapped.append({**item, "field": field})
    summary = "; ".join(f"{f.get('field')}: {f.get('message')}" for f in mapped[:5] if isinstance(f, dict))
    out = InvalidPayload(f"Invalid request: {summary}", {**details, "fields": mapped},
                         suggested_action=exc.suggested_action)
    out.http_status = exc.http_status
    return out


def messages_sha256(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


@dataclass
class _Interaction:
    """What one request learned so far; becomes the audit entry whatever happens."""

    endpoint: str
    request_id: str
    caller_key_id: str | None
    prompt: str
    started: float = field(default_factory=time.perf_counter)
    selection: Selection | None = None
    call: WorkerCall | None = None
    messages_sha: str | None = None
    response: str | None = None
    prompt_tokens: int | None = None
    tokens_generated: int | None = None
    worker_id: str | None = None  # the last worker tried, when the call failed


class PromptingService:
    """The only place prompts are assembled. It is given exactly the parts it uses: templates to
    select from, the client that calls workers, the audit writer, and the settings."""

    def __init__(self, templates: TemplateService, client: WorkerClient, audit: AuditWriter,
                 settings: GatewaySettings) -> None:
        self.templates = templates
        self.client = client
        self.audit = audit
        self.settings = settings

    # -- helpers -------------------------------------------------------------------------------
    def _preview(self, text: str | None, n: int | None = None) -> str | None:
        if text is None or self.settings.log_prompts == "none":
            return None
        if self.settings.log_prompts == "full":
            return text
        n = n or self.settings.audit_preview_chars
        return text if len(text) <= n else text[:n] + "..."

    def _audit(self, it: _Interaction, status: int, error_code: str | None) -> None:
        sel, call = it.selection, it.call
        worker_id = call.worker.id if call else it.worker_id
        self.audit.record({
            "id": uuid.uuid4().hex, "created_at": datetime.now(UTC), "request_id": it.request_id,
            "endpoint": it.endpoint, "caller_key_id": it.caller_key_id,
            "template_name": sel.template.template_name if sel else None,
            "template_version": sel.template.version if sel else None,
            "fallback_level": sel.fallback_level if sel else None, "cache_hit": sel.cache_hit if sel else None,
            "worker_id": worker_id, "messages_sha256": it.messages_sha,
            "prompt_preview": self._preview(it.prompt), "response_preview": self._preview(it.response),
            "prompt_tokens": it.prompt_tokens, "tokens_generated": it.tokens_generated,
            "latency_ms": round((time.perf_counter() - it.started) * 1000, 3), "status": status,
            "error_code": error_code,
        })

    def _failed(self, it: _Interaction, exc: BaseException) -> PureInferError:
        """Any failure, ours included: the audit row first (it must exist whatever happens
        next), then the log lines; the caller gets the coded error."""
        err = as_pureinfer_error(exc)
        it.worker_id = getattr(exc, "worker_id", None)
        self._audit(it, err.http_status, err.code.value)
        if not isinstance(exc, PureInferError):
            log.error("unexpected error", exc_info=exc, extra={"event": "gateway_error"})
        log.warning("request failed", extra={"event": f"{it.endpoint}_failed",
                                             "error_code": err.code.value, "error": err.message})
        return err

    async def _select(self, it: _Interaction, key: Any, worker_type: str) -> Selection:
        sel = await self.templates.select(key)
        it.selection = sel
        t = sel.template
        log.info("Enhancing with template", extra={
            "event": "template_selected", "template": t.template_name,
            "template_version": t.version, "enhancerModel": t.enhancer_model, "targetModel": t.target_model,
            "selectedModel": key.enhancer_model, "workerType": worker_type, "contentMode": t.content_mode,
            "fallback_level": sel.fallback_level, "cache_hit": sel.cache_hit})
        return sel

    def _payload_log(self, it: _Interaction, messages: list[dict[str, str]], max_tokens: int) -> None:
        assert it.selection is not None
        log.info("Chat worker payload (pure inference)", extra={
            "event": "worker_payload", "messagesCount": len(messages),
            "systemPromptLength": len(messages[0]["content"]), "userPromptLength": len(messages[-1]["content"]),
            "maxTokens": max_tokens, "templateName": it.selection.template.template_name,
            "payloadBytes": len(json.dumps(messages))})

    def _metadata(self, it: _Interaction, data: dict[str, Any]) -> ExecutionMetadata:
        assert it.selection is not None and it.call is not None
        t = it.selection.template
        return ExecutionMetadata(
            template_name=t.template_name, template_version=t.version, fallback_level=it.selection.fallback_level,
            cache_hit=it.selection.cache_hit, worker_id=it.call.worker.id, worker_type=it.call.worker.worker_type,
            model_used=data.get("model_used"), generation_time=data.get("generation_time"),
            tokens_generated=data.get("tokens_generated"), prompt_tokens=data.get("prompt_tokens"),
            prompt_sha256=data.get("prompt_sha256"), token_limit=t.token_limit, attempts=it.call.attempts,
            gateway_latency_ms=round((time.perf_counter() - it.started) * 1000, 3))

    # -- /enhance-prompt -------------------------------------------------------------------------
    async def enhance(self, req: EnhanceRequest, request_id: str, caller_key_id: str | None) -> EnhanceResponse:
        it = _Interaction("enhance-prompt", request_id, caller_key_id, req.prompt)
        try:
            log.info("Dynamic enhance prompt request", extra={
                "event": "enhance_request", "prompt": self._preview(req.prompt, 100),
                "jobType": req.job_type, "format": req.format, "quality": req.quality,
                "selectedModel": req.enhancer_model or self.settings.default_enhancer_model,
                "targetModel": req.target_model, "contentMode": req.content_mode, "promptLength": len(req.prompt)})
            sel = await self._select(it, req.key(self.settings.default_enhancer_model), "chat")
            messages = req.messages(sel.template)
            it.messages_sha = messages_sha256(messages)
            payload = {"messages": messages, "max_tokens": sel.template.token_limit, **req.sampling()}
            self._payload_log(it, messages, sel.template.token_limit)
            try:
                resp, it.call = await self.client.post("chat", sel.template.enhancer_model, "/enhance",
                                                       payload, request_id)
            except InvalidPayload as exc:
                raise in_callers_terms(exc, req, sel) from None
            data = resp.json()
            enhanced = data.get("enhanced_prompt") or data.get("response") or ""
            it.response, it.prompt_tokens, it.tokens_generated = (enhanced, data.get("prompt_tokens"),
                                                                  data.get("tokens_generated"))
            out = EnhanceResponse(original_prompt=req.prompt, enhanced_prompt=enhanced, request_id=request_id,
                                  execution_metadata=self._metadata(it, data))
            log.info("ENHANCED PROMPT GENERATED", extra={
                "event": "enhance_result", "originalPrompt": self._preview(req.prompt),
                "enhancedPrompt": self._preview(enhanced), "templateUsed": sel.template.template_name,
                "templateVersion": sel.template.version, "fallback_level": sel.fallback_level,
                "workerId": it.call.worker.id, "tokensGenerated": it.tokens_generated,
                "latencyMs": out.execution_metadata.gateway_latency_ms})
        except asyncio.CancelledError:
            self._audit(it, 499, "CLIENT_DISCONNECTED")
            raise
        except Exception as exc:
            raise self._failed(it, exc) from None
        self._audit(it, 200, None)
        return out

    # -- /chat -----------------------------------------------------------------------------------
    async def chat(self, req: ChatRequest, request_id: str,
                   caller_key_id: str | None) -> dict[str, Any] | tuple[StreamRelay, dict[str, str]]:
        it = _Interaction("chat", request_id, caller_key_id, req.message)
        try:
            log.info("Chat request", extra={
                "event": "chat_request", "userMessage": self._preview(req.message, 100),
                "historyLength": len(req.history), "stream": req.stream, "contentMode": req.content_mode,
                "messageLength": len(req.message)})
            sel = await self._select(it, req.key(self.settings.default_enhancer_model), "chat")
            messages = req.messages(sel.template)
            it.messages_sha = messages_sha256(messages)
            max_tokens = req.max_tokens or sel.template.token_limit
            payload = {"messages": messages, "max_tokens": max_tokens, **req.sampling()}
            if req.stream:
                payload["stream"] = True
            self._payload_log(it, messages, max_tokens)
            try:
                resp, it.call = await self.client.post("chat", sel.template.enhancer_model, "/chat", payload,
                                                       request_id, stream=req.stream)
            except InvalidPayload as exc:
                raise in_callers_terms(exc, req, sel) from None
            if req.stream:
                t = sel.template
                headers = {"X-Request-ID": request_id, "X-Template-Name": t.template_name,
                           "X-Template-Version": str(t.version), "X-Fallback-Level": str(sel.fallback_level),
                           "X-Cache-Hit": str(sel.cache_hit).lower(), "X-Worker-Id": it.call.worker.id,
                           "Cache-Control": "no-cache"}
                return StreamRelay(self, it, resp), headers
            data = resp.json()
            it.response = data.get("response") or data.get("enhanced_prompt")
            it.prompt_tokens, it.tokens_generated = data.get("prompt_tokens"), data.get("tokens_generated")
            out = {**data, "request_id": request_id,
                   "execution_metadata": self._metadata(it, data).model_dump()}
            log.info("Chat response", extra={"event": "chat_result",
                                             "response": self._preview(it.response), "workerId": it.call.worker.id,
                                             "tokensGenerated": it.tokens_generated})
        except asyncio.CancelledError:
            self._audit(it, 499, "CLIENT_DISCONNECTED")
            raise
        except Exception as exc:
            raise self._failed(it, exc) from None
        self._audit(it, 200, None)
        return out


class StreamRelay:
    """The worker's SSE bytes passed through unchanged, read on the side for the audit entry.

    `close()` releases the worker connection and its in-flight count and writes the audit entry,
    once: at the end of the stream, when the caller goes away mid-stream, and also when the
    response was cancelled before iteration began (then no generator code would ever run)."""

    def __init__(self, svc: PromptingService, it: _Interaction, resp: Any) -> None:
        self.svc, self.it, self.resp = svc, it, resp
        self.text: list[str] = []
        self.status, self.done = 200, False
        self.error_code: str | None = None
        self._closed = False

    async def close(self, interrupted: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if interrupted and not self.done:  # after [DONE] the caller has everything
            self.status, self.error_code = 499, self.error_code or "CLIENT_DISCONNECTED"
        try:
            await self.resp.aclose()
        finally:
            assert self.it.call is not None
            WorkerClient.release(self.it.call)
            self.it.response = "".join(self.text)
            self.svc._audit(self.it, self.status, self.error_code)

    async def chunks(self) -> AsyncIterator[bytes]:
        pending = b""
        try:
            async for chunk in self.resp.aiter_raw():
                yield chunk
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._observe(line)
        except BaseException:
            await self.close(interrupted=True)
            raise
        await self.close()

    def _observe(self, line: bytes) -> None:
        if line.strip() == b"data: [DONE]":
            self.done = True
            return
        if not line.startswith(b"data:"):
            return
        try:
            ev = json.loads(line[5:])
        except ValueError:
            return
        if not isinstance(ev, dict):
            return
        err: dict[str, Any] = ev["error"] if isinstance(ev.get("error"), dict) else ev
        if err.get("error_code"):  # the worker's error event (the stream had begun)
            self.error_code, self.status = str(err["error_code"]), 500
        for k in ("text", "delta", "content"):
            if isinstance(ev.get(k), str):
                self.text.append(ev[k])
                break
        else:
            choices = ev.get("choices")
            if isinstance(choices, list) and choices and isinstance(choices[0], dict):
                d = choices[0].get("delta") or {}
                if isinstance(d, dict) and isinstance(d.get("content"), str):
                    self.text.append(d["content"])
        for k in ("tokens_generated", "prompt_tokens"):
            if isinstance(ev.get(k), int):
                setattr(self.it, k, ev[k])
        usage = ev.get("usage")
        if isinstance(usage, dict):
            self.it.tokens_generated = usage.get("completion_tokens", self.it.tokens_generated)
            self.it.prompt_tokens = usage.get("prompt_tokens", self.it.prompt_tokens)
