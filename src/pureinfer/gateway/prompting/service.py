"""Enhance-prompt and chat: select the template, build the messages (the only place prompts are
assembled), call a worker through the client, log the seed's four edge-function events with its
field names, record the audit entry (successes and failures alike, internal errors included):
the model, the sampling parameters with the seed the worker used, the worker's prompt hash beside
ours of the messages, the response hash, the attempts, and the prompt text as --audit-prompts says."""

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

import httpx

from pureinfer.errors import (
    InternalError,
    InvalidPayload,
    PureInferError,
    WorkerUnavailable,
    as_pureinfer_error,
    envelope,
)
from pureinfer.gateway.audit.writer import AuditWriter
from pureinfer.gateway.bounds import MAX_SQL_BIGINT, MAX_SQL_INT
from pureinfer.gateway.prompting.protocol import (
    ChatRequest,
    EnhanceRequest,
    EnhanceResponse,
    ExecutionMetadata,
    strategy_of,
    strategy_without_template,
)
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.gateway.templates.protocol import Selection, SelectionKey
from pureinfer.gateway.templates.service import TemplateService
from pureinfer.gateway.workers.client import WorkerCall, WorkerClient

log = logging.getLogger("pureinfer.gateway.prompting")
WORKER_TYPE = "chat"  # enhancement and chat both run on text workers


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
    for attr in ("worker_id", "attempts"):  # what the client noted for the audit row
        setattr(out, attr, getattr(exc, attr, None))
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
    if mapped == fields:
        return exc  # nothing about the messages: the worker's envelope passes through unchanged
    summary = "; ".join(f"{f.get('field')}: {f.get('message')}" for f in mapped[:5] if isinstance(f, dict))
    out = InvalidPayload(f"Invalid request: {summary}", {**details, "fields": mapped},
                         suggested_action=exc.suggested_action)
    out.http_status = exc.http_status
    return out


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def messages_sha256(messages: list[dict[str, str]]) -> str:
    return sha256_text(json.dumps(messages, separators=(",", ":"), ensure_ascii=False))


def _count(value: Any) -> int | None:
    """A number a worker reported, kept only when it is one an INTEGER column holds."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SQL_INT else None


@dataclass(frozen=True, slots=True)
class TemplateUse:
    """The template an interaction used, as its audit row names it: from the selection (the
    sync routes), or from what a job stored of its selection at submission."""

    name: str
    version: int
    fallback_level: int
    cache_hit: bool | None

    @classmethod
    def of(cls, sel: Selection) -> TemplateUse:
        return cls(sel.template.template_name, sel.template.version, sel.fallback_level, sel.cache_hit)


@dataclass
class Interaction:
    """What one request learned so far; becomes the audit entry whatever happens."""

    endpoint: str
    request_id: str
    caller_key_id: str | None
    prompt: str
    started: float = field(default_factory=time.perf_counter)
    selection: Selection | None = None
    template: TemplateUse | None = None
    call: WorkerCall | None = None
    messages: list[dict[str, str]] | None = None
    messages_sha: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)  # as sent; the seed as the worker used it
    response: str | None = None
    model_used: str | None = None
    prompt_sha256: str | None = None  # the worker's, of the prompt it rendered from the messages
    prompt_tokens: int | None = None
    tokens_generated: int | None = None
    worker_id: str | None = None  # the last worker tried, when the call failed
    attempts: int | None = None

    def observe(self, data: dict[str, Any]) -> None:
        """What a worker's answer (its JSON body, or its final stream event) says about the run."""
        for key in ("prompt_tokens", "tokens_generated"):
            if key in data:
                setattr(self, key, _count(data[key]))
        if isinstance(data.get("model_used"), str):
            self.model_used = data["model_used"][:200]
        if isinstance(data.get("prompt_sha256"), str):
            self.prompt_sha256 = data["prompt_sha256"][:64]
        seed = data.get("seed")
        if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SQL_BIGINT:
            self.sampling["seed"] = seed  # workers report the seed they used (drawn when none was asked)

    @property
    def strategy(self) -> str | None:
        t = self.template
        return strategy_of(t.name, t.version, t.fallback_level) if t else None


class PromptingService:
    """The only place prompts are assembled. It is given exactly the parts it uses: templates to
    select from, the client that calls workers, the audit writer, and the settings."""

    def __init__(self, templates: TemplateService, client: WorkerClient, audit: AuditWriter,
                 settings: GatewaySettings) -> None:
        self.templates = templates
        self.client = client
        self.audit = audit
        self.settings = settings

    # -- what of a prompt is kept where ---------------------------------------------------------
    @staticmethod
    def _cut(text: str | None, mode: str, n: int) -> str | None:
        if text is None or mode == "none":
            return None
        if mode == "full":
            return text
        return text if len(text) <= n else text[:n] + "..."  # the seed's cut

    def _log_text(self, text: str | None, n: int) -> str | None:
        """For log lines: --log-prompts none | preview (n characters, as the seed cuts) | full."""
        return self._cut(text, self.settings.log_prompts, n)

    def record(self, it: Interaction, status: int, error_code: str | None) -> None:
        """The audit row of one interaction (the sync routes', and each finished text job's)."""
        t, call = it.template, it.call
        mode = self.settings.audit_prompts
        preview = "preview" if mode == "full" else mode  # with full, the whole text goes in its own columns
        strategy = it.strategy or (strategy_without_template(error_code) if error_code else None)
        self.audit.record({
            "id": uuid.uuid4().hex, "created_at": datetime.now(UTC), "request_id": it.request_id,
            "endpoint": it.endpoint, "caller_key_id": it.caller_key_id,
            "template_name": t.name if t else None, "template_version": t.version if t else None,
            "fallback_level": t.fallback_level if t else None, "cache_hit": t.cache_hit if t else None,
            "worker_id": call.worker.id if call else it.worker_id, "messages_sha256": it.messages_sha,
            "worker_type": WORKER_TYPE if call or it.worker_id else None,
            "prompt_preview": self._cut(it.prompt, preview, self.settings.audit_preview_chars),
            "response_preview": self._cut(it.response, preview, self.settings.audit_preview_chars),
            "prompt_tokens": it.prompt_tokens, "tokens_generated": it.tokens_generated,
            "latency_ms": round((time.perf_counter() - it.started) * 1000, 3), "status": status,
            "error_code": error_code, "model_used": it.model_used, "sampling": it.sampling or None,
            "prompt_sha256": it.prompt_sha256,
            "response_sha256": sha256_text(it.response) if it.response is not None else None,
            "attempts": call.attempts if call else it.attempts, "strategy": strategy,
            "messages": it.messages if mode == "full" else None,
            "response_text": it.response if mode == "full" else None,
        })

    def _failed(self, it: Interaction, exc: BaseException) -> PureInferError:
        """Any failure, ours included: the audit row first (it must exist whatever happens
        next), then the log lines; the caller gets the coded error."""
        err = as_pureinfer_error(exc)
        it.worker_id = getattr(exc, "worker_id", None)
        it.attempts = getattr(exc, "attempts", None)
        self.record(it, err.http_status, err.code.value)
        if not isinstance(exc, PureInferError):
            log.error("unexpected error", exc_info=exc, extra={"event": "gateway_error"})
        log.warning("request failed", extra={
            "event": f"{it.endpoint}_failed", "error_code": err.code.value, "error": err.message,
            "strategy": it.strategy or strategy_without_template(err.code.value)})
        return err

    # -- the steps both endpoints take ----------------------------------------------------------
    async def _select(self, it: Interaction, key: SelectionKey) -> Selection:
        sel = await self.templates.select(key)
        it.selection = sel
        it.template = TemplateUse.of(sel)
        t = sel.template
        log.info("Enhancing with template", extra={
            "event": "template_selected", "template": t.template_name, "enhancerModel": t.enhancer_model,
            "modelType": t.target_model, "selectedModel": key.enhancer_model, "workerType": WORKER_TYPE,
            "contentMode": t.content_mode, "targetModel": t.target_model, "template_version": t.version,
            "fallback_level": sel.fallback_level, "cache_hit": sel.cache_hit})
        return sel

    async def _call(self, it: Interaction, req: EnhanceRequest | ChatRequest, path: str, max_tokens: int,
                    stream: bool = False) -> Any:
        """Build the messages and the payload, log it as the seed does, and call a worker. A
        worker's refusal of a message names the caller's field (`in_callers_terms`)."""
        assert it.selection is not None
        t = it.selection.template
        it.messages = req.messages(t)
        it.messages_sha = messages_sha256(it.messages)
        it.sampling = {"max_tokens": max_tokens, **req.sampling()}
        payload: dict[str, Any] = {"messages": it.messages, **it.sampling}
        if stream:
            payload["stream"] = True
        log.info("Chat worker payload (pure inference)", extra={
            "event": "worker_payload", "messagesCount": len(it.messages),
            "systemPromptLength": len(t.system_prompt), "userPromptLength": len(it.messages[-1]["content"]),
            "maxTokens": max_tokens, "templateName": t.template_name})
        try:
            resp, it.call = await self.client.post(WORKER_TYPE, t.enhancer_model, path, payload, it.request_id,
                                                   stream=stream)
        except InvalidPayload as exc:
            raise in_callers_terms(exc, req, it.selection) from None
        return resp

    def _metadata(self, it: Interaction, data: dict[str, Any]) -> ExecutionMetadata:
        assert it.selection is not None and it.call is not None
        t = it.selection.template
        generation_time = data.get("generation_time")
        # The type that served the request, as the worker reports it: a role-`all` worker answers
        # text as "chat", which its registry entry ("all") does not say.
        reported = data.get("execution_metadata")
        served_by = reported.get("worker_type") if isinstance(reported, dict) else None
        return ExecutionMetadata(
            worker_type=served_by if isinstance(served_by, str) and served_by else WORKER_TYPE,
            template_name=t.template_name,
            fallback_level=it.selection.fallback_level, cache_hit=it.selection.cache_hit, template_version=t.version,
            worker_id=it.call.worker.id, model_used=it.model_used,
            generation_time=generation_time if isinstance(generation_time, int | float) else None,
            tokens_generated=it.tokens_generated, prompt_tokens=it.prompt_tokens, prompt_sha256=it.prompt_sha256,
            seed=it.sampling.get("seed"), token_limit=t.token_limit, attempts=it.call.attempts,
            gateway_latency_ms=round((time.perf_counter() - it.started) * 1000, 3))

    # -- /enhance-prompt -------------------------------------------------------------------------
    async def enhance(self, req: EnhanceRequest, request_id: str, caller_key_id: str | None) -> EnhanceResponse:
        it = Interaction("enhance-prompt", request_id, caller_key_id, req.prompt)
        try:
            selected_model = req.enhancer_model or self.settings.default_enhancer_model
            log.info("Dynamic enhance prompt request", extra={
                "event": "enhance_request", "prompt": self._log_text(req.prompt, 100), "jobType": req.job_type,
                "format": req.format, "quality": req.quality, "selectedModel": selected_model,
                "promptLength": len(req.prompt), "targetModel": req.target_model, "contentMode": req.content_mode})
            sel = await self._select(it, req.key(self.settings.default_enhancer_model))
            resp = await self._call(it, req, "/enhance", sel.template.token_limit)
            data = resp.json()
            it.observe(data)
            it.response = data.get("enhanced_prompt") or data.get("response") or ""
            md = self._metadata(it, data)
            out = EnhanceResponse(
                enhanced_prompt=it.response, generation_time=md.generation_time, tokens_generated=md.tokens_generated,
                model_used=md.model_used, pure_inference=data.get("pure_inference") is True,
                no_prompt_overrides=data.get("no_prompt_overrides") is True,
                template_respected=data.get("template_respected") is not False, execution_metadata=md,
                original_prompt=req.prompt, request_id=request_id, strategy=it.strategy or "")
            log.info("ENHANCED PROMPT GENERATED", extra={
                "event": "enhance_result", "originalPrompt": self._log_text(req.prompt, 200),
                "enhancedPrompt": self._log_text(it.response, 200), "templateUsed": sel.template.template_name,
                "strategy": out.strategy, "templateVersion": sel.template.version, "workerId": md.worker_id,
                "tokensGenerated": md.tokens_generated, "latencyMs": md.gateway_latency_ms})
        except asyncio.CancelledError:
            self.record(it, 499, "CLIENT_DISCONNECTED")
            raise
        except Exception as exc:
            raise self._failed(it, exc) from None
        self.record(it, 200, None)
        return out

    # -- /chat -----------------------------------------------------------------------------------
    async def chat(self, req: ChatRequest, request_id: str, caller_key_id: str | None,
                   endpoint: str = "chat") -> dict[str, Any] | tuple[StreamRelay, dict[str, str]]:
        """`endpoint`: the audit row's name for the route the caller used (`/chat`, or a front-end's
        API translated to it, e.g. `ollama/chat`)."""
        it = Interaction(endpoint, request_id, caller_key_id, req.message)
        try:
            log.info("Chat request", extra={
                "event": "chat_request", "userMessage": self._log_text(req.message, 100),
                "historyLength": len(req.history), "stream": req.stream, "contentMode": req.content_mode,
                "messageLength": len(req.message)})
            sel = await self._select(it, req.key(self.settings.default_enhancer_model))
            resp = await self._call(it, req, "/chat", req.max_tokens or sel.template.token_limit, stream=req.stream)
            if req.stream:
                assert it.call is not None
                t = sel.template
                headers = {"X-Request-ID": request_id, "X-Template-Name": t.template_name,
                           "X-Template-Version": str(t.version), "X-Fallback-Level": str(sel.fallback_level),
                           "X-Cache-Hit": str(sel.cache_hit).lower(), "X-Worker-Id": it.call.worker.id,
                           "Cache-Control": "no-cache"}
                return StreamRelay(self, it, resp), headers
            data = resp.json()
            it.observe(data)
            it.response = data.get("response") or data.get("enhanced_prompt")
            out = {**data, "request_id": request_id, "strategy": it.strategy,
                   "execution_metadata": self._metadata(it, data).model_dump()}
            log.info("Chat response", extra={"event": "chat_result", "response": self._log_text(it.response, 200),
                                             "workerId": out["execution_metadata"]["worker_id"],
                                             "tokensGenerated": it.tokens_generated, "strategy": it.strategy})
        except asyncio.CancelledError:
            self.record(it, 499, "CLIENT_DISCONNECTED")
            raise
        except Exception as exc:
            raise self._failed(it, exc) from None
        self.record(it, 200, None)
        return out


class StreamRelay:
    """The worker's SSE bytes passed through unchanged, read on the side for the audit entry.

    `close()` releases the worker connection and its in-flight count and writes the audit entry,
    once: at the end of the stream, when the caller goes away mid-stream, and also when the
    response was cancelled before iteration began (then no generator code would ever run)."""

    def __init__(self, svc: PromptingService, it: Interaction, resp: Any) -> None:
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
            self.svc.record(self.it, self.status, self.error_code)

    async def chunks(self) -> AsyncIterator[bytes]:
        pending = b""
        try:
            try:
                async for chunk in self.resp.aiter_raw():
                    yield chunk
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        self._observe(line)
            except httpx.TransportError:
                if self.done:
                    raise
                # The worker went away mid-stream (killed, connection cut). The caller's status
                # line is long sent, so the error arrives as the worker's own would: an error event
                # (after ending any half-sent line), then [DONE], never a dropped connection.
                err = WorkerUnavailable("The worker stopped in the middle of the stream; retry the request")
                env = envelope(err, self.it.request_id)
                self.status, self.error_code = err.http_status, str(env["error_code"])
                yield ((b"\n\n" if pending else b"") + b"data: " + json.dumps({"error": env}).encode()
                       + b"\n\ndata: [DONE]\n\n")
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
        self.it.observe({k: ev[k] for k in ("tokens_generated", "prompt_tokens", "model_used", "prompt_sha256",
                                            "seed") if k in ev})
        usage = ev.get("usage")
        if isinstance(usage, dict):
            self.it.observe({k: usage[o] for k, o in (("tokens_generated", "completion_tokens"),
                                                      ("prompt_tokens", "prompt_tokens")) if o in usage})
