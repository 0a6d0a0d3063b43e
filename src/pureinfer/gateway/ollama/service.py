"""Ollama's chat and generate through the gateway's one chat path.

An Ollama request becomes the gateway's own `ChatRequest` (protocol.py says how) and runs through
`PromptingService.chat`, exactly as `/chat` does: template selection with its fallback levels,
the template's system prompt first, a healthy worker, retries, signed calls, the audit row (its
endpoint `ollama/chat` or `ollama/generate`). This module only translates: fields named in the
caller's terms (`messages.3.content`, `prompt`), and the worker's answer, JSON or SSE, into
Ollama's JSON or NDJSON, with our proof fields and the template that was applied beside Ollama's.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from pureinfer import __version__
from pureinfer.errors import InvalidPayload, NotFound
from pureinfer.gateway.ollama.protocol import OLLAMA_DEFAULTS, OllamaChatRequest, OllamaGenerateRequest
from pureinfer.gateway.prompting.protocol import ChatRequest
from pureinfer.gateway.prompting.service import PromptingService, StreamRelay
from pureinfer.gateway.workers.registry import WorkerRegistry
from pureinfer.wire.ollama import Kind, model_details, now_iso, piece

WORKER_TYPE = "chat"
_HISTORY_FIELD = re.compile(r"^history\.(\d+)\.content$")


def _ns(seconds: Any) -> int:
    return max(0, round(seconds * 1e9)) if isinstance(seconds, int | float) else 0


class OllamaGateway:
    def __init__(self, prompting: PromptingService, registry: WorkerRegistry) -> None:
        self.prompting = prompting
        self.registry = registry

    # -- models ------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Every text model the registered workers serve (healthy or not: a model does not leave
        the list while its worker restarts)."""
        return sorted({m for w in self.registry.workers.values() if w.serves(WORKER_TYPE) for m in w.text_models()})

    def check_model(self, name: str) -> str:
        alias = name.removesuffix(":latest")
        known = self.models()
        if known and alias not in known:
            raise NotFound(f'model "{name}" not found, try pulling it first',
                           {"fields": [{"field": "model", "message": f"no worker serves it; served: {known}"}]},
                           suggested_action="Use a model name from GET /api/tags")
        return alias

    def tags(self) -> dict[str, Any]:
        started = now_iso()
        return {"models": [{"name": m, "model": m, "modified_at": started, "size": 0, "digest": "",
                            "details": model_details(m)} for m in self.models()]}

    def show(self, name: str) -> dict[str, Any]:
        alias = self.check_model(name)
        params = "\n".join(f"{k} {v}" for k, v in OLLAMA_DEFAULTS.items())
        return {"modelfile": "", "template": "", "license": "", "parameters": params, "details": model_details(alias),
                "model_info": {"general.architecture": "pureinfer", "general.name": alias},
                "capabilities": ["completion"], "modified_at": now_iso()}

    @staticmethod
    def version() -> dict[str, str]:
        return {"version": __version__}

    # -- the request, in /chat's terms ---------------------------------------------------------------
    def to_chat(self, body: OllamaChatRequest | OllamaGenerateRequest) -> ChatRequest | None:
        """The gateway's ChatRequest, or None for Ollama's "load the model" call."""
        fields: dict[str, Any] = {"enhancer_model": self.check_model(body.model), "stream": body.stream,
                                  **body.chat_fields()}
        if isinstance(body, OllamaGenerateRequest):
            if body.system:
                raise InvalidPayload.field("system", "the gateway's template is the only system prompt")
            if body.raw:
                raise InvalidPayload.field("raw", "the gateway always applies its template; raw prompts go "
                                           "to a worker's /api/generate")
            if body.prompt == "":
                return None
            fields |= {"message": body.prompt}
        else:
            if not body.messages:
                return None
            for i, m in enumerate(body.messages):
                if m.role == "system":
                    raise InvalidPayload.field(f"messages.{i}.role", "the gateway's template is the only system "
                                               "prompt; send user and assistant turns")
            last = len(body.messages) - 1
            if body.messages[last].role != "user":
                raise InvalidPayload.field(f"messages.{last}.role", "the conversation must end with the user's turn")
            fields |= {"message": body.messages[last].content,
                       "history": [{"role": m.role, "content": m.content} for m in body.messages[:last]]}
        try:
            return ChatRequest(**fields)
        except ValidationError as exc:
            problems = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
            raise self._in_callers_terms(InvalidPayload("Invalid request", {"fields": problems}), body) from None

    @staticmethod
    def _in_callers_terms(exc: InvalidPayload, body: OllamaChatRequest | OllamaGenerateRequest) -> InvalidPayload:
        """/chat's field names (`message`, `history.N.content`, `max_tokens`) as the Ollama caller sent them."""
        details = exc.details if isinstance(exc.details, dict) else {}
        fields = details.get("fields")
        if not isinstance(fields, list):
            return exc
        last = len(body.messages) - 1 if isinstance(body, OllamaChatRequest) else 0
        names = {"message": f"messages.{last}.content" if isinstance(body, OllamaChatRequest) else "prompt",
                 "max_tokens": "options.num_predict", "enhancer_model": "model"}
        for k in ("temperature", "top_p", "top_k", "seed", "stop"):
            names[k] = f"options.{k}"

        def rename(field: str) -> str:
            m = _HISTORY_FIELD.match(field)
            return f"messages.{m.group(1)}.content" if m else names.get(field, field)

        mapped = [{**f, "field": rename(str(f.get("field")))} if isinstance(f, dict) else f for f in fields]
        summary = "; ".join(f"{f.get('field')}: {f.get('message')}" for f in mapped[:5] if isinstance(f, dict))
        out = InvalidPayload(f"Invalid request: {summary}", {**details, "fields": mapped},
                             suggested_action=exc.suggested_action)
        out.http_status = exc.http_status
        return out

    async def run(self, kind: Kind, body: OllamaChatRequest | OllamaGenerateRequest, request_id: str,
                  caller: str | None) -> dict[str, Any] | tuple[StreamRelay, dict[str, str]]:
        """The answer (`stream: false`), or the worker's stream to translate with `lines()`."""
        chat = self.to_chat(body)
        if chat is None:
            return piece(kind, body.model, "") | {"done": True, "done_reason": "load"}
        try:
            result = await self.prompting.chat(chat, request_id, caller, endpoint=f"ollama/{kind}")
        except InvalidPayload as exc:
            raise self._in_callers_terms(exc, body) from None
        if isinstance(result, tuple):
            return result
        return self._final(kind, body.model, result, result.get("response") or "")

    # -- the answer, in Ollama's terms --------------------------------------------------------------
    @staticmethod
    def _final(kind: Kind, model: str, data: dict[str, Any], text: str) -> dict[str, Any]:
        md = data.get("execution_metadata") or {}
        out = {**piece(kind, model, text), "done": True, "done_reason": data.get("finish_reason", "stop"),
               "total_duration": _ns((md.get("gateway_latency_ms") or 0) / 1000), "load_duration": 0,
               "prompt_eval_count": data.get("prompt_tokens"), "eval_count": data.get("tokens_generated"),
               "eval_duration": _ns(data.get("generation_time")),
               "prompt_sha256": data.get("prompt_sha256"), "seed": data.get("seed"),
               "model_used": data.get("model_used"), "request_id": data.get("request_id")}
        for k in ("template_name", "template_version", "fallback_level", "worker_id"):
            if k in md:
                out[k] = md[k]
        return out

    async def lines(self, kind: Kind, model: str, relay: StreamRelay, request_id: str,
                    headers: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """The worker's SSE events as Ollama's NDJSON objects: a piece per text delta, the `done`
        object from the final event, an `{"error": ...}` object from an error event."""
        template = {"template_name": headers.get("X-Template-Name"),
                    "template_version": int(headers.get("X-Template-Version", "0")) or None,
                    "fallback_level": int(headers.get("X-Fallback-Level", "0")),
                    "worker_id": headers.get("X-Worker-Id")}
        pending = b""
        async for chunk in relay.chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                event = _event(raw)
                if event is None:
                    continue
                if isinstance(event.get("error"), dict):
                    yield event["error"]  # the envelope: `error` is its message, as Ollama's is
                elif "finish_reason" in event:
                    latency_ms = (time.perf_counter() - relay.it.started) * 1000  # since the gateway took it
                    final = self._final(kind, model, {**event, "request_id": request_id,
                                                      "execution_metadata": {"gateway_latency_ms": latency_ms}}, "")
                    yield {**final, **template}
                elif isinstance(event.get("text"), str):
                    yield {**piece(kind, model, event["text"]), "done": False}


def _event(raw: bytes) -> dict[str, Any] | None:
    line = raw.strip()
    if not line.startswith(b"data:") or line == b"data: [DONE]":
        return None
    try:
        event = json.loads(line[5:])
    except ValueError:
        return None
    return event if isinstance(event, dict) else None
