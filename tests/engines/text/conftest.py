"""Fixtures for the text engine tests: the session's tiny demo model made "lively" (see
`tests.support.engine.lively_copy`), one shared engine on it, and a reference copy of the model
for `model.generate()`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine import lively_copy


@pytest.fixture(scope="session")
def tiny_text_dir(demo_text_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lively_copy(demo_text_dir, tmp_path_factory.mktemp("engine-demo-lively") / "text")


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

    from pureinfer.engines.text.engine import load_text_engine

    eng = load_text_engine(str(tiny_text_dir), device="cpu", dtype="float32", max_running=16, max_waiting=64)
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.shutdown())
