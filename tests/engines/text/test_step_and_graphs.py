"""The decode fast path's parts: the KV plan, the host-built step, the graph buckets, and the
engine with bucketed decode steps (the CUDA-graph bookkeeping, run eagerly on the CPU)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch

from pureinfer.engines.text.graphs import batch_buckets, key_buckets, round_up
from pureinfer.engines.text.kvcache import KVBudgetTooSmall, KVShape, SlotKVCache, plan_slot_len
from pureinfer.engines.text.step import DecodeRow, PrefillChunk, build_step, place
from tests.engines.text.test_batching import MESSAGES, reference_greedy, staggered
from tests.support.engine import collect

SHAPE = KVShape(n_layers=2, n_kv_heads=2, head_dim=4)


def test_kv_plan_fits_the_budget_and_refuses_too_little() -> None:
    per_token = SHAPE.bytes_per_token(torch.float32)
    assert per_token == 2 * 2 * 2 * 4 * 4
    assert plan_slot_len(SHAPE, torch.float32, slots=4, n_ctx=32768, budget_bytes=None) == 32768
    budget = 5 * 1001 * per_token  # (4 slots + scratch) x (1000 positions + scratch)
    assert plan_slot_len(SHAPE, torch.float32, slots=4, n_ctx=32768, budget_bytes=budget) == 768  # aligned down
    assert plan_slot_len(SHAPE, torch.float32, slots=4, n_ctx=512, budget_bytes=budget) == 512  # the context caps
    with pytest.raises(KVBudgetTooSmall, match="--gpu-memory-fraction"):
        plan_slot_len(SHAPE, torch.float32, slots=4, n_ctx=32768, budget_bytes=5 * 200 * per_token)


def test_slots_are_taken_lowest_first_and_given_back_once() -> None:
    cache = SlotKVCache(SHAPE, slots=3, slot_len=8, dtype=torch.float32, device="cpu")
    assert cache.layers[0].shape == (2, 4, 2, 9, 4)  # the scratch slot and position
    assert [cache.acquire() for _ in range(4)] == [0, 1, 2, None]
    cache.release(1)
    with pytest.raises(ValueError):
        cache.release(1)
    assert cache.acquire() == 1


def test_step_buffer_layout_with_holes_padding_and_prefill() -> None:
    cache = SlotKVCache(SHAPE, slots=4, slot_len=16, dtype=torch.float32, device="cpu")
    decode = [DecodeRow(slot=0, token=11, position=5), DecodeRow(slot=2, token=12, position=3)]
    prefill = [PrefillChunk(slot=1, tokens=[7, 8, 9], start=0, sample=True),
               PrefillChunk(slot=3, tokens=[4, 5], start=6, sample=False)]
    host, layout = build_step(decode, prefill, cache)
    inputs = place(layout, host.clone())
    b = inputs.batch
    # Rows 0..2 are slots 0..2; slot 1 is a hole there (it is prefilling): token 0, scratch write.
    assert b.n_decode == 3 and b.decode_len == 6 and b.n_tokens == 8
    assert inputs.input_ids.tolist() == [[11, 0, 12, 7, 8, 9, 4, 5]]
    assert inputs.position_ids.tolist() == [[5, 0, 3, 0, 1, 2, 6, 7]]
    assert b.write_slots.tolist() == [0, cache.scratch_slot, 2, 1, 1, 1, 3, 3]
    assert b.write_pos.tolist() == [5, cache.scratch_pos, 3, 0, 1, 2, 6, 7]
    assert b.decode_lengths is not None and b.decode_lengths.tolist() == [6, 1, 4]
    assert b.decode_mask()[:, 0, 0].tolist() == [[True] * 6, [True] + [False] * 5, [True] * 4 + [False] * 2]
    # Kept logits: decode rows 0 and 2, then the last token of the chunk that ends its prompt.
    assert inputs.logits_index.tolist() == [0, 2, 5] and layout.sample_order == [0, 2, 3]
    assert [(p.slot, p.start, p.length, p.offset) for p in b.prefills] == [(1, 0, 3, 3), (3, 6, 2, 6)]
    assert b.prefills[0].mask is None and b.prefills[1].mask is not None  # causal / offset-causal
    # A lone decoding request has no mask: the shapes of a batch-1 generate().
    _, lone = build_step([DecodeRow(0, 1, 9)], [], cache)
    assert lone.batch.decode_lengths is None and lone.batch.decode_len == 10
    # Padded to a bucket: more rows (holes) and more keys (masked).
    _, padded = build_step(decode, [], cache, rows=4, decode_len=8)
    assert padded.batch.n_decode == 4 and padded.batch.decode_len == 8 and padded.batch.decode_lengths is not None
    with pytest.raises(ValueError):
        build_step(decode, [], cache, rows=2)


def test_graph_buckets() -> None:
    assert batch_buckets(1) == [1]
    assert batch_buckets(16) == [1, 2, 4, 8, 16]
    assert batch_buckets(64) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert batch_buckets(20) == [1, 2, 4, 8, 16, 20]
    assert key_buckets(2048) == [256, 512, 1024, 2048]
    assert key_buckets(3000) == [256, 512, 1024, 2048, 3000]
    assert round_up(9, [1, 2, 4, 8, 16]) == 16 and round_up(17, [1, 2, 4, 8, 16]) is None


@pytest.fixture(scope="module")
def graph_engine(tiny_text_dir: Path) -> Any:
    """Decode-only steps run through the graph runner, eagerly (mode "eager": the same buckets,
    padding and static buffers as CUDA-graph replay)."""
    from pureinfer.engines.text.engine import load_text_engine

    eng = load_text_engine(str(tiny_text_dir), device="cpu", max_running=8, max_waiting=32)
    eng._graph_mode = "eager"
    eng._kv_budget = 9 * 1025 * KVShape.of(eng.model.config).bytes_per_token(eng.dtype)  # 8 slots x 1024
    asyncio.run(eng.start())
    assert eng._graphs is not None and eng._graphs.key_buckets == [256, 512, 1024]
    yield eng
    asyncio.run(eng.shutdown())


async def test_bucketed_decode_steps_give_the_same_greedy_tokens(graph_engine: Any, reference_model: Any) -> None:
    eng = graph_engine
    prompts = [eng.encode(eng.apply_chat_template(m)) for m in MESSAGES[:4]]
    lengths = [24, 40, 8, 32]
    expected = [reference_greedy(reference_model, p, n) for p, n in zip(prompts, lengths, strict=True)]
    replays = eng._graphs.replays
    assert (await collect(eng, prompts[0], max_tokens=lengths[0], temperature=0.0))[1] == expected[0]
    got = await staggered(eng, [(p, {"max_tokens": n, "temperature": 0.0})
                                for p, n in zip(prompts + prompts, lengths + lengths, strict=True)])
    assert got == expected + expected
    assert eng._graphs.replays - replays > 40  # decode-only steps went through the buckets


async def test_bucketed_decode_steps_keep_seeded_sampling(graph_engine: Any, engine: Any) -> None:
    ids = engine.encode(engine.apply_chat_template(MESSAGES[1]))
    params = {"max_tokens": 20, "temperature": 0.9, "top_p": 0.9, "top_k": 40, "repetition_penalty": 1.1, "seed": 5}
    plain = (await collect(engine, ids, **params))[1]
    assert (await collect(graph_engine, ids, **params))[1] == plain


async def test_cache_memory_never_read_before_it_is_written_or_zeroed(tiny_text_dir: Path, reference_model: Any) -> None:
    """The decode call reads every slot of its view up to the longest row and masks the rest by
    adding -inf: a NaN left in never-written memory would poison the row. Poisoned on purpose."""
    from pureinfer.engines.text.engine import load_text_engine

    eng = load_text_engine(str(tiny_text_dir), device="cpu", max_running=4, max_waiting=8)
    await eng.start()
    try:
        for layer in eng._kv.layers:
            layer.fill_(float("nan"))
        prompts = [eng.encode(eng.apply_chat_template(m)) for m in MESSAGES[:3]]
        expected = [reference_greedy(reference_model, p, 12) for p in prompts]
        got = await staggered(eng, [(p, {"max_tokens": 12, "temperature": 0.0}) for p in prompts])
        assert got == expected
        assert eng._kv.clean % 256 == 0 and eng._kv.clean < eng._kv.slot_len  # only the context used
    finally:
        await eng.shutdown()


def test_ids_past_the_tokenizer_are_never_sampled() -> None:
    from pureinfer.engines.text.sampling import RowParams, sample_rows

    logits = torch.randn(3, 100)
    logits[:, 90:] = 50.0  # the padded rows would win every draw
    rows = [RowParams(0.0, 1.0, 0, 1.0, False, None),
            RowParams(1.0, 1.0, 0, 1.0, False, torch.Generator().manual_seed(1)),
            RowParams(1.5, 0.9, 5, 1.3, False, torch.Generator().manual_seed(2), seen_ids=torch.tensor([1, 2]))]
    for _ in range(20):
        assert all(t < 90 for t in sample_rows(logits.clone(), rows, torch.tensor([0]), n_valid=90))


async def test_engine_masks_output_rows_past_its_tokenizer(tiny_text_dir: Path) -> None:
    """The demo shapes (like real Qwen checkpoints) have more output rows than tokens: those ids
    decode to nothing and are never sampled, so every token is text (and TTFT is measurable)."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from pureinfer.engines.text.engine import HFTextEngine

    tokenizer = AutoTokenizer.from_pretrained(tiny_text_dir)
    n = len(tokenizer)
    config = Qwen2Config(vocab_size=n + 64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # padded rows that dominate: +-1000 x a real row, one sign wins any hidden state
        w = model.lm_head.weight
        w[n:n + 32] = 1000 * w[5]
        w[n + 32:] = -1000 * w[5]
    eng = HFTextEngine(model, tokenizer, model_id="padded", max_running=2, max_waiting=2)
    assert eng._n_valid == n
    await eng.start()
    try:
        ids = tokenizer.encode("the dragon castle")
        for params in ({"temperature": 0.0}, {"temperature": 1.0, "seed": 3}):
            text, out, _, deltas = await collect(eng, ids, max_tokens=12, min_tokens=12, **params)
            assert len(out) == 12 and all(t < n for t in out)
    finally:
        await eng.shutdown()
