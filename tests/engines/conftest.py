"""Fixtures for the text engine tests: the tiny demo model (built once per session, offline),
one shared engine on it, and a reference copy of the model for `model.generate()`.

The demo builder's random init (std 0.02, tied embeddings) gives a model whose greedy output just
repeats the last prompt token, which would make "same tokens" comparisons meaningless. The tests
therefore use the tiny demo model with its layer matrices scaled by 8 (saved with
`save_pretrained` and loaded with `from_pretrained` like any model): same architecture and
tokenizer, but outputs that depend on every prompt token and every earlier output token."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pureinfer.engines.demo_text import build_text_model

    built = build_text_model(tmp_path_factory.mktemp("engine-demo") / "text", "tiny")
    model = AutoModelForCausalLM.from_pretrained(built, dtype=torch.float32)
    with torch.no_grad():
        for param in model.model.layers.parameters():
            if param.dim() == 2:
                param.mul_(8.0)
    lively = tmp_path_factory.mktemp("engine-demo-lively") / "text"
    model.save_pretrained(lively)
    AutoTokenizer.from_pretrained(built).save_pretrained(lively)
    return lively


@pytest.fixture(scope="session")
def reference_model(tiny_text_dir: Path) -> Any:
    """The same weights with stock SDPA attention, for `generate()` comparisons."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_text_dir, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def engine(tiny_text_dir: Path) -> Iterator[Any]:
    """One running engine shared by the tests (the engine thread is independent of event loops)."""
    import asyncio

    from pureinfer.engines.hf_text import load_text_engine

    eng = load_text_engine(str(tiny_text_dir), device="cpu", dtype="float32", max_running=16, max_waiting=64)
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.shutdown())
