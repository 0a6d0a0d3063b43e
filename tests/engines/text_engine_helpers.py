"""Helpers shared by the text engine tests (importable: pytest puts this folder on sys.path)."""

from __future__ import annotations

from typing import Any

from pureinfer.engines.base import SamplingParams, TextDelta, TextRequest


async def collect(engine: Any, prompt_ids: list[int], rid: str = "r", deadline: float | None = None,
                  **params: Any) -> tuple[str, list[int], str | None, list[TextDelta]]:
    """Run one request to the end: (text, token ids, finish_reason, deltas)."""
    deltas = [d async for d in engine.generate(TextRequest(rid, prompt_ids, SamplingParams(**params), deadline))]
    text = "".join(d.text for d in deltas)
    ids = [t for d in deltas for t in d.token_ids]
    return text, ids, deltas[-1].finish_reason, deltas
