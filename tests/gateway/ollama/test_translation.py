"""The gateway's translation of a worker's SSE stream into Ollama's NDJSON objects, on exact bytes:
text deltas become pieces, the final event the `done` object with the template headers, an error
event the envelope (which Ollama's clients raise), and events split across chunks at any byte."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

from pureinfer.gateway.ollama.service import OllamaGateway

HEADERS = {"X-Template-Name": "chat", "X-Template-Version": "3", "X-Fallback-Level": "1", "X-Worker-Id": "w1"}


class FakeRelay:
    """What `lines()` uses of a StreamRelay: its chunks and the interaction's start time."""

    def __init__(self, body: bytes, chunk: int) -> None:
        self.body, self.chunk = body, chunk
        self.it = SimpleNamespace(started=time.perf_counter())

    async def chunks(self) -> AsyncIterator[bytes]:
        for i in range(0, len(self.body), self.chunk):
            yield self.body[i:i + self.chunk]


def _sse(*events: Any) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\r\n\r\n" for e in events)


def _translate(body: bytes, chunk: int) -> list[dict[str, Any]]:
    svc = OllamaGateway(prompting=None, registry=None)  # type: ignore[arg-type]  # lines() uses neither

    async def run() -> list[dict[str, Any]]:
        return [x async for x in svc.lines("generate", "m", FakeRelay(body, chunk), "rid", HEADERS)]  # type: ignore[arg-type]

    return asyncio.run(run())


def test_deltas_and_the_final_event_at_any_chunk_size() -> None:
    final = {"success": True, "response": "Hello", "finish_reason": "length", "prompt_tokens": 5,
             "tokens_generated": 2, "prompt_sha256": "a" * 64, "seed": 7, "model_used": "m", "generation_time": 0.5}
    body = b": ping\r\n\r\n" + _sse({"text": "Hel"}, {"text": "lo"}, final, b"[DONE]")
    for chunk in (1, 3, 7, len(body)):
        out = _translate(body, chunk)
        assert [x.get("response") for x in out[:-1]] == ["Hel", "lo"] and all(x["done"] is False for x in out[:-1])
        last = out[-1]
        assert last["done"] is True and last["done_reason"] == "length" and last["response"] == ""
        assert (last["prompt_eval_count"], last["eval_count"], last["seed"]) == (5, 2, 7)
        assert (last["template_name"], last["template_version"], last["fallback_level"], last["worker_id"]) == (
            "chat", 3, 1, "w1")
        assert last["request_id"] == "rid" and last["eval_duration"] == 500_000_000


def test_an_error_event_is_the_envelope() -> None:
    envelope = {"success": False, "error": "deadline passed", "error_code": "WORKER_TIMEOUT", "details": None,
                "suggested_action": "retry", "request_id": "rid"}
    out = _translate(_sse({"text": "a"}, {"error": envelope}, b"[DONE]"), 5)
    assert out[-1] == envelope and len(out) == 2
