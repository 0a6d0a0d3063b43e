"""Helpers of the text engine tests: run one request to its end, and the "lively" tiny model."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from pureinfer.api.native.protocol import DEFAULTS, SamplingFields
from pureinfer.api.native.validation import DRAWN_SEED_BOUND
from pureinfer.engines.base import SamplingParams, TextDelta, TextRequest


def sampling(seed: int | None = 0, **fields: Any) -> SamplingParams:
    """Fully specified engine parameters: `fields` as a /chat caller would send them, the native
    defaults for the rest (as admission fills them in), seed 0 unless given; None draws one, as
    admission does for a request without a seed."""
    drawn = secrets.randbelow(DRAWN_SEED_BOUND) if seed is None else seed
    return SamplingFields(**fields).sampling_params(DEFAULTS["chat"], drawn)


async def collect(engine: Any, prompt_ids: list[int], rid: str = "r", deadline: float | None = None,
                  **params: Any) -> tuple[str, list[int], str | None, list[TextDelta]]:
    """Run one request to the end: (text, token ids, finish_reason, deltas)."""
    deltas = [d async for d in engine.generate(TextRequest(rid, prompt_ids, sampling(**params), deadline))]
    text = "".join(d.text for d in deltas)
    ids = [t for d in deltas for t in d.token_ids]
    return text, ids, deltas[-1].finish_reason, deltas


def lively_copy(demo_text_dir: Path, out: Path) -> Path:
    """The tiny demo model with its layer matrices scaled by 8, saved to `out`.

    The demo builder's random init (std 0.02, tied embeddings) gives a model whose greedy output
    just repeats the last prompt token, which would make "same tokens" comparisons meaningless;
    scaled, the same architecture and tokenizer give outputs that depend on every prompt token
    and every earlier output token. Saved with `save_pretrained` and loaded like any model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(demo_text_dir, dtype=torch.float32)
    with torch.no_grad():
        for param in model.model.layers.parameters():
            if param.dim() == 2:
                param.mul_(8.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(demo_text_dir).save_pretrained(out)
    return out
