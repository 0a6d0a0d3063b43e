"""Continuous batching gives the same tokens as one-at-a-time decoding, and the model receives
exactly the tokens of the rendered chat template."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from tests.support.engine import collect

MESSAGES: list[list[dict[str, str]]] = [
    [{"role": "user", "content": "a dragon over the ocean"}],
    [{"role": "system", "content": "héllo wörld"}, {"role": "user", "content": "東京 こんにちは 🙂 🚀 ✨"}],
    [{"role": "user", "content": "castle"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "?"}],
    [{"role": "user", "content": "golden hour portrait, cinematic light, neon rain " * 3}],
    # A long history: more tokens than one step's budget, so the prompt is prefilled in chunks.
    [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: the ancient temple garden in the night sky"}
     for i in range(30)],
]


async def idle(engine: Any) -> None:
    for _ in range(500):
        if engine.num_running == 0 and engine.num_waiting == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("engine did not go idle")


def reference_greedy(model: Any, ids: list[int], max_new: int, repetition_penalty: float = 1.0) -> list[int]:
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new, do_sample=False, repetition_penalty=repetition_penalty,
        )
    return out[0, len(ids):].tolist()


async def staggered(engine: Any, jobs: list[tuple[list[int], dict[str, Any]]]) -> list[list[int]]:
    """Start the jobs a few steps apart, so requests join and leave a running batch."""

    async def one(i: int, ids: list[int], params: dict[str, Any]) -> list[int]:
        await asyncio.sleep(0.004 * i)
        return (await collect(engine, ids, rid=f"job-{i}", **params))[1]

    return list(await asyncio.gather(*(one(i, ids, p) for i, (ids, p) in enumerate(jobs))))


@pytest.mark.parametrize("repetition_penalty", [1.0, 1.3])
async def test_greedy_batched_equals_sequential_generate(engine: Any, reference_model: Any,
                                                         repetition_penalty: float) -> None:
    prompts = [engine.encode(engine.apply_chat_template(m)) for m in MESSAGES]
    assert max(len(p) for p in prompts) > engine._scheduler.max_step_tokens  # chunked prefill is exercised
    lengths = [24, 40, 8, 32, 16]
    expected = [reference_greedy(reference_model, p, n, repetition_penalty) for p, n in zip(prompts, lengths, strict=True)]
    params = [{"max_tokens": n, "temperature": 0.0, "repetition_penalty": repetition_penalty} for n in lengths]
    # Alone, one at a time.
    for ids, p, exp in zip(prompts, params, expected, strict=True):
        assert (await collect(engine, ids, **p))[1] == exp
    # Together, twice over (10 requests joining at different steps, leaving at different steps).
    got = await staggered(engine, list(zip(prompts + prompts, params + params, strict=True)))
    assert got == expected + expected
    if repetition_penalty != 1.0:
        assert all(len(set(e)) > len(e) // 2 for e in expected)  # the outputs are not degenerate


async def test_seeded_sampling_same_alone_and_batched(engine: Any) -> None:
    prompts = [engine.encode(engine.apply_chat_template(m)) for m in MESSAGES]
    variants: list[dict[str, Any]] = [
        {"temperature": 0.8, "top_p": 0.9},
        {"temperature": 1.2, "top_p": 1.0, "top_k": 50},
        {"temperature": 0.7, "top_p": 0.5, "repetition_penalty": 1.2},
        {"temperature": 1.0, "top_p": 0.95, "top_k": 5},
        {"temperature": 0.0},  # a greedy neighbour
    ]
    jobs = [(ids, {"max_tokens": 20 + 4 * i, "seed": 1000 + i, **v})
            for i, (ids, v) in enumerate(zip(prompts, variants, strict=True))]
    alone = [(await collect(engine, ids, **p))[1] for ids, p in jobs]
    assert len({tuple(a) for a in alone}) == len(alone)
    batched = await staggered(engine, jobs + jobs[::-1])
    assert batched == alone + alone[::-1]
    # Another seed gives another output; no seed gives a fresh draw each time.
    other = (await collect(engine, jobs[0][0], **{**jobs[0][1], "seed": 7}))[1]
    assert other != alone[0]
    unseeded = {tuple((await collect(engine, jobs[0][0], **{**jobs[0][1], "seed": None}))[1]) for _ in range(3)}
    assert len(unseeded) == 3


async def test_model_receives_exactly_the_rendered_template(engine: Any) -> None:
    await idle(engine)
    seen: list[list[int]] = []
    embed = engine.model.get_input_embeddings()
    hook = embed.register_forward_hook(lambda _m, args, _out: seen.append(args[0][0].tolist()))
    try:
        for messages in MESSAGES:
            rendered = engine.apply_chat_template(messages)
            by_hand = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
            assert rendered == by_hand + "<|im_start|>assistant\n"
            assert rendered == engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = engine.encode(rendered)
            seen.clear()
            _, out, _, _ = await collect(engine, ids, max_tokens=3, temperature=0.0)
            fed = [t for step in seen for t in step]
            assert fed == ids + out[:-1]  # the prompt (in one or more chunks), then each new token
    finally:
        hook.remove()


async def test_odd_prompt_lengths_share_a_step(engine: Any, reference_model: Any) -> None:
    """A one-token prompt, and a prompt one token longer than a step's budget (its last chunk is a
    single token behind another prompt's chunk), batched with decoding requests."""
    budget = engine._scheduler.max_step_tokens
    long_ids = engine.encode(engine.apply_chat_template(MESSAGES[4]))
    prompts = [[5], long_ids[: budget + 1], long_ids[:300], prompts_short := engine.encode("the dragon castle")]
    assert len(prompts_short) > 1
    expected = [reference_greedy(reference_model, p, 12) for p in prompts]
    got = await staggered(engine, [(p, {"max_tokens": 12, "temperature": 0.0}) for p in prompts])
    assert got == expected


async def test_encode_from_many_threads_while_decoding(engine: Any) -> None:
    """Callers may encode from any thread while the engine thread detokenizes (the engine decodes
    with its own tokenizer copy and serializes `encode`: fast tokenizers can refuse concurrent use)."""
    import threading

    text = engine.apply_chat_template(MESSAGES[1]) * 20
    expected = engine.encode(text)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(30):
                assert engine.encode(text) == expected
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    outs = await asyncio.gather(*(collect(engine, expected[:40], rid=f"enc-{i}", max_tokens=30, temperature=1.0,
                                          seed=i) for i in range(4)))
    for t in threads:
        t.join()
    assert errors == []
    assert all(text_out == engine.tokenizer.decode(ids, skip_special_tokens=True) for text_out, ids, _, _ in outs)
