"""The bridge between Ollama's wire shapes and the worker's one text path (`TextServing`).

An Ollama request becomes the native request of the same meaning (protocol.py) and goes through
`TextServing.generate` exactly as /chat does: permit, validation (the model's chat template,
control tokens refused, limits), engine. This module only resolves Ollama's model names and
writes Ollama's answers: the text, `done_reason`, token counts and durations in nanoseconds, and
beside them our proof fields (`prompt_sha256`, `seed`, `request_id`), which Ollama's clients
keep as extra fields.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from pureinfer import __version__
from pureinfer.api.native.protocol import DEFAULTS
from pureinfer.api.native.serving import CompletionBuilder, TextGeneration, TextServing
from pureinfer.api.ollama.protocol import OllamaChatRequest, OllamaGenerateRequest
from pureinfer.errors import InvalidPayload, NotFound
from pureinfer.wire.ollama import Kind, model_details, now_iso, piece

_STARTED = datetime.now(UTC)


def _ns(seconds: float) -> int:
    return max(0, round(seconds * 1e9))


class OllamaServing:
    def __init__(self, text: TextServing) -> None:
        self.text = text

    # -- models ------------------------------------------------------------------------------------
    def resolve(self, name: str) -> str:
        """Our alias for an Ollama model name (`qwen:latest` is `qwen`), or Ollama's 404."""
        alias = name.removesuffix(":latest")
        if alias not in self.text.engines:
            raise NotFound(f'model "{name}" not found, try pulling it first',
                           {"fields": [{"field": "model", "message": f"unknown model; this worker serves "
                                        f"{sorted(self.text.engines)}"}]},
                           suggested_action="Use a model name from GET /api/tags")
        return alias

    def tags(self) -> dict[str, Any]:
        """`GET /api/tags`. The digest identifies the model's source (id or path), not a manifest."""
        return {"models": [{
            "name": alias, "model": alias, "modified_at": _STARTED.isoformat().replace("+00:00", "Z"), "size": 0,
            "digest": hashlib.sha256(engine.model_id.encode()).hexdigest(), "details": model_details(alias),
        } for alias, engine in self.text.engines.items()]}

    def show(self, name: str) -> dict[str, Any]:
        alias = self.resolve(name)
        engine = self.text.engines[alias]
        d = DEFAULTS["ollama"]
        defaults = (f"temperature {d.temperature}", f"top_p {d.top_p}", f"top_k {d.top_k}", f"num_predict {d.max_tokens}")
        return {
            "modelfile": "", "template": "", "license": "", "parameters": "\n".join(defaults),
            "details": model_details(alias),
            "model_info": {"general.architecture": "pureinfer", "general.name": alias,
                           "pureinfer.context_length": engine.n_ctx},
            "capabilities": ["completion"],
            "modified_at": _STARTED.isoformat().replace("+00:00", "Z"),
        }

    @staticmethod
    def version() -> dict[str, str]:
        return {"version": __version__}

    # -- generation --------------------------------------------------------------------------------
    async def start(self, kind: Kind, body: OllamaChatRequest | OllamaGenerateRequest,
                    request_id: str) -> TextGeneration | None:
        """The admitted generation, or None for Ollama's "load the model" call (no messages, or an
        empty prompt), which has nothing to run here: the models are loaded."""
        alias = self.resolve(body.model)
        if isinstance(body, OllamaGenerateRequest):
            if body.raw and body.system:
                raise InvalidPayload.field("system", "a raw prompt is sent as it is; put the system text in it")
            if body.prompt == "":
                return None
        elif not body.messages:
            return None
        return await self.text.generate("ollama", body.to_native(alias), request_id)

    @staticmethod
    def loaded(kind: Kind, model: str) -> dict[str, Any]:
        out: dict[str, Any] = {"model": model, "created_at": now_iso(), "done": True, "done_reason": "load"}
        if kind == "chat":
            out["message"] = {"role": "assistant", "content": ""}
        else:
            out["response"] = ""
        return out

    @staticmethod
    def _final(kind: Kind, model: str, g: TextGeneration, text: str, n_tokens: int, finish: str,
               first_at: float | None) -> dict[str, Any]:
        v = g.valid
        end = time.monotonic()
        first = first_at if first_at is not None else end
        return {
            **piece(kind, model, text), "done": True, "done_reason": finish,
            "total_duration": _ns(end - v.admitted_at), "load_duration": 0,
            "prompt_eval_count": v.prompt_tokens, "prompt_eval_duration": _ns(first - v.admitted_at),
            "eval_count": n_tokens, "eval_duration": _ns(end - first),
            "prompt_sha256": v.prompt_sha256, "seed": v.params.seed, "request_id": v.request_id,
        }

    async def complete(self, kind: Kind, model: str, g: TextGeneration) -> dict[str, Any]:
        """`stream: false`: one object with the whole text."""
        builder, first_at = CompletionBuilder(), None
        async for delta in g.deltas():
            first_at = first_at or time.monotonic()
            builder.add(delta)
        c = builder.build(g.valid.admitted_at)
        return self._final(kind, model, g, c.text, len(c.token_ids), c.finish_reason, first_at)

    async def stream(self, kind: Kind, model: str, g: TextGeneration) -> AsyncIterator[dict[str, Any]]:
        """One line per text delta, then the `done` line with the counts and our proof fields."""
        builder, first_at = CompletionBuilder(), None
        async for delta in g.deltas():
            first_at = first_at or time.monotonic()
            builder.add(delta)
            if delta.text:
                yield {**piece(kind, model, delta.text), "done": False}
        c = builder.build(g.valid.admitted_at)
        yield self._final(kind, model, g, "", len(c.token_ids), c.finish_reason, first_at)
