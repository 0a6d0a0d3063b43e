"""What a caller sees: stop strings, min_tokens, max_tokens, EOS and UTF-8-safe deltas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from pureinfer.engines.text.output import OutputText
from tests.support.engine import collect

PROMPT = [{"role": "user", "content": "a story about the golden city 東京 🙂"}]


def prompt_ids(engine: Any) -> list[int]:
    return engine.encode(engine.apply_chat_template(PROMPT))


async def test_max_tokens_ends_with_length(engine: Any) -> None:
    text, ids, reason, deltas = await collect(engine, prompt_ids(engine), max_tokens=17, temperature=0.9, seed=3)
    assert reason == "length" and len(ids) == 17
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert text == engine.tokenizer.decode(ids, skip_special_tokens=True)


async def test_deltas_never_split_a_character(engine: Any) -> None:
    """Sampled output of this model is full of byte-level tokens (partial characters); the
    deltas must join to exactly the text of the whole output, with no stray U+FFFD."""
    checked = 0
    for seed in range(6):
        text, ids, _, deltas = await collect(engine, prompt_ids(engine), max_tokens=60, temperature=1.5, seed=seed)
        full = engine.tokenizer.decode(ids, skip_special_tokens=True)
        assert text == full
        assert text.count("\ufffd") == full.count("\ufffd")
        checked += sum(1 for t in ids if len(engine.tokenizer.decode([t])) and "\ufffd" in engine.tokenizer.decode([t]))
    assert checked > 0  # some tokens were partial characters on their own


def test_output_text_holds_back_partial_characters(tiny_text_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_text_dir)
    byte_to_char = dict(zip(_gpt2_bytes(), _gpt2_chars(), strict=True))
    ids = [tok.convert_tokens_to_ids(byte_to_char[b]) for b in "x🙂é東".encode()]
    out = OutputText(tok.backend_tokenizer, eos_ids={tok.eos_token_id}, max_tokens=len(ids))
    pieces = [out.add(i).text for i in ids]
    assert pieces == ["x", "", "", "", "🙂", "", "é", "", "", "東"]


async def test_stop_string_is_cut_out(engine: Any) -> None:
    ids = prompt_ids(engine)
    full, full_ids, _, _ = await collect(engine, ids, max_tokens=40, temperature=0.9, seed=11)
    stop = full[12:15]
    assert len(stop.strip()) == 3 and full.find(stop) == 12
    text, out_ids, reason, deltas = await collect(engine, ids, max_tokens=40, temperature=0.9, seed=11,
                                                  stop=("never-there", stop))
    assert reason == "stop"
    assert text == full[:12]
    assert out_ids == full_ids[: len(out_ids)] and len(out_ids) < len(full_ids)
    assert stop not in "".join(d.text for d in deltas)


async def test_min_tokens_defers_stop_strings(engine: Any) -> None:
    ids = prompt_ids(engine)
    # (min_tokens removes EOS from the distribution, so compare with min_tokens on both sides.)
    full, full_ids, _, _ = await collect(engine, ids, max_tokens=40, min_tokens=40, temperature=0.9, seed=11)
    stop = full[12:15]
    assert stop.strip()
    text, out_ids, reason, _ = await collect(engine, ids, max_tokens=40, min_tokens=40, temperature=0.9, seed=11,
                                             stop=(stop,))
    assert (text, out_ids, reason) == (full, full_ids, "length")


@pytest.fixture(scope="module")
def eos_engine(tiny_text_dir: Path) -> Any:
    """The tiny model with a bias that makes EOS the most likely token at every step."""
    import asyncio

    from pureinfer.engines.text.engine import load_text_engine

    eng = load_text_engine(str(tiny_text_dir), device="cpu", dtype="float32")
    head = eng.model.lm_head
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True)
    with torch.no_grad():
        biased.weight.copy_(head.weight)
        biased.bias.zero_()
        biased.bias[eng.tokenizer.eos_token_id] = 1000.0
    eng.model.lm_head = biased
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.shutdown())


async def test_eos_ends_with_stop_and_min_tokens_suppresses_it(eos_engine: Any) -> None:
    ids = prompt_ids(eos_engine)
    eos = eos_engine.tokenizer.eos_token_id
    for params in ({"temperature": 0.0}, {"temperature": 0.8, "seed": 1}):
        text, out, reason, _ = await collect(eos_engine, ids, max_tokens=20, **params)
        assert (text, out, reason) == ("", [eos], "stop")
        text, out, reason, _ = await collect(eos_engine, ids, max_tokens=20, min_tokens=6, **params)
        assert reason == "stop" and len(out) == 7 and out[-1] == eos and eos not in out[:-1]
        assert text == eos_engine.tokenizer.decode(out, skip_special_tokens=True)
        # min_tokens == max_tokens: a fixed length, whatever the model prefers (benchmarks use this).
        _, out, reason, _ = await collect(eos_engine, ids, max_tokens=9, min_tokens=9, **params)
        assert reason == "length" and len(out) == 9 and eos not in out


def _gpt2_bytes() -> list[int]:
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    return bs + [b for b in range(256) if b not in bs]


def _gpt2_chars() -> list[str]:
    """The byte-level alphabet in the order of `_gpt2_bytes` (GPT-2's bytes_to_unicode)."""
    bs = _gpt2_bytes()
    n_printable = 188
    return [chr(b) for b in bs[:n_printable]] + [chr(256 + i) for i in range(len(bs) - n_printable)]
