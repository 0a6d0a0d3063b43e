"""Cancellation, deadlines, overload, device errors and a dying engine loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from pureinfer.engines.base import TextRequest
from pureinfer.errors import InternalError, OutOfMemory, WorkerTimeout, WorkerUnavailable
from tests.support.engine import collect, sampling

LONG = sampling(max_tokens=1500, min_tokens=1500, temperature=0.8, seed=1)


def prompt(engine: Any) -> list[int]:
    return engine.encode(engine.apply_chat_template([{"role": "user", "content": "tell me about the ocean"}]))


async def wait_for(cond: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.002)


@pytest.fixture()
async def small_engine(tiny_text_dir: Path) -> Any:
    from pureinfer.engines.text.engine import load_text_engine

    eng = load_text_engine(str(tiny_text_dir), device="cpu", max_running=1, max_waiting=1)
    await eng.start()
    yield eng
    await eng.shutdown()


async def test_closing_streams_frees_slots_within_a_step(engine: Any) -> None:
    ids = prompt(engine)
    gens = [engine.generate(TextRequest(f"c{i}", ids, LONG)) for i in range(10)]
    await asyncio.gather(*(g.__anext__() for g in gens))
    assert engine.num_running == 10
    steps = engine.steps
    for g in gens:
        await g.aclose()
    await wait_for(lambda: engine.num_running == 0 and engine.num_waiting == 0)
    assert engine.steps - steps <= 2  # the step in flight, at most one more


async def test_cancelling_consumers_frees_slots(engine: Any) -> None:
    ids = prompt(engine)
    started = asyncio.Event()

    async def consume(i: int) -> None:
        async for _ in engine.generate(TextRequest(f"t{i}", ids, LONG)):
            started.set()

    tasks = [asyncio.create_task(consume(i)) for i in range(10)]
    await started.wait()
    await wait_for(lambda: engine.num_running == 10)
    steps = engine.steps
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await wait_for(lambda: engine.num_running == 0 and engine.num_waiting == 0)
    assert engine.steps - steps <= 2


async def test_deadline_raises_worker_timeout_and_stops_the_work(engine: Any) -> None:
    ids = prompt(engine)
    steps = engine.steps
    with pytest.raises(WorkerTimeout):
        await collect(engine, ids, deadline=time.monotonic() + 0.3, **{
            "max_tokens": 1500, "min_tokens": 1500, "temperature": 0.8, "seed": 1})
    assert engine.steps - steps < 1500  # stopped at the deadline, not run to max_tokens
    await wait_for(lambda: engine.num_running == 0, timeout=2.0)


async def test_deadline_counts_queue_time_and_overload_is_refused(small_engine: Any) -> None:
    ids = prompt(small_engine)
    running = small_engine.generate(TextRequest("run", ids, LONG))
    await running.__anext__()
    queued = small_engine.generate(TextRequest("queued", ids, LONG, deadline=time.monotonic() + 0.3))
    waiting_task = asyncio.create_task(queued.__anext__())
    await wait_for(lambda: small_engine.num_waiting == 1)
    # One running, one waiting: a third breaks what the admission gate guarantees.
    with pytest.raises(AssertionError):
        await small_engine.generate(TextRequest("over", ids, LONG)).__anext__()
    # The queued one never ran, and still times out on its deadline; the engine drops it.
    with pytest.raises(WorkerTimeout):
        await waiting_task
    await wait_for(lambda: small_engine.num_waiting == 0)
    assert small_engine.num_running == 1
    await running.aclose()
    await wait_for(lambda: small_engine.num_running == 0)


async def test_prompt_that_does_not_fit_is_a_broken_precondition(engine: Any) -> None:
    # Admission refuses it with TOKEN_LIMIT_EXCEEDED (tests/api/native/test_validation.py); an
    # engine asked to run it anyway refuses a programming error, naming the counts.
    with pytest.raises(ValueError, match=f"100 tokens.*{engine.n_ctx}.*{engine.n_ctx}"):
        await collect(engine, [1] * 100, max_tokens=engine.n_ctx)
    with pytest.raises(ValueError, match="at least one prompt token"):
        await collect(engine, [], max_tokens=5)


async def test_device_oom_fails_the_step_and_the_engine_goes_on(small_engine: Any) -> None:
    ids = prompt(small_engine)

    def oom_once(_module: Any, _args: Any) -> None:
        hook.remove()
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    hook = small_engine.model.get_input_embeddings().register_forward_pre_hook(oom_once)
    with pytest.raises(OutOfMemory):
        await collect(small_engine, ids, max_tokens=5, temperature=0.0)
    assert small_engine.is_alive() and small_engine.num_running == 0
    _, out, reason, _ = await collect(small_engine, ids, max_tokens=5, temperature=0.0)
    assert len(out) == 5 and reason == "length"


async def test_request_that_cannot_fit_the_kv_plan_is_refused_and_others_go_on(tiny_text_dir: Path) -> None:
    """A fake budget: 2 slots of 256 positions. A request needing more than a slot is refused with
    OUT_OF_MEMORY at submission; requests beyond the slots queue and run once a slot is free."""
    from pureinfer.engines.text.engine import load_text_engine
    from pureinfer.engines.text.kvcache import KVShape

    eng = load_text_engine(str(tiny_text_dir), device="cpu", max_running=2, max_waiting=4)
    per_token = KVShape.of(eng.model.config).bytes_per_token(eng.dtype)
    eng._kv_budget = 3 * 300 * per_token  # (2 slots + scratch) x (256 positions + scratch) fits, 512 not
    await eng.start()
    try:
        assert eng.kv_slot_len == 256 and eng._kv.nbytes <= eng._kv_budget
        ids = prompt(eng)
        with pytest.raises(OutOfMemory) as info:
            await collect(eng, ids, max_tokens=257 - len(ids) + 1, temperature=0.0)
        assert info.value.details == {"needed_tokens": 258, "kv_tokens_per_request": 256}
        n = 256 - len(ids)  # exactly a slot
        outs = await asyncio.gather(*(collect(eng, ids, rid=f"q{i}", max_tokens=n, min_tokens=n, temperature=0.0)
                                      for i in range(4)))
        assert all(len(o[1]) == n for o in outs)
        assert len({tuple(o[1]) for o in outs}) == 1
        assert eng._kv.num_free == 2
    finally:
        await eng.shutdown()


async def test_fatal_device_error_kills_the_engine(small_engine: Any) -> None:
    """A CUDA error that is not an out-of-memory leaves the context broken: the engine dies (the
    worker's watchdog then turns it unready and exits), instead of going on as if nothing happened."""
    ids = prompt(small_engine)

    def device_assert(_module: Any, _args: Any) -> None:
        raise RuntimeError("CUDA error: device-side assert triggered (simulated)")

    hook = small_engine.model.get_input_embeddings().register_forward_pre_hook(device_assert)
    try:
        with pytest.raises(InternalError):
            await collect(small_engine, ids, max_tokens=5, temperature=0.0)
        await wait_for(lambda: not small_engine.is_alive())
    finally:
        hook.remove()
    with pytest.raises(WorkerUnavailable):
        await collect(small_engine, ids, max_tokens=2)


async def test_dead_loop_fails_pending_requests_and_turns_unalive(small_engine: Any) -> None:
    ids = prompt(small_engine)
    gen = small_engine.generate(TextRequest("doomed", ids, LONG))
    await gen.__anext__()

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("scheduler bug")

    small_engine._scheduler.schedule = broken
    with pytest.raises(InternalError):
        async for _ in gen:
            pass
    await wait_for(lambda: not small_engine.is_alive())
    with pytest.raises(WorkerUnavailable):
        await collect(small_engine, ids, max_tokens=2)


async def test_shutdown_fails_what_is_left(small_engine: Any) -> None:
    ids = prompt(small_engine)
    gen = small_engine.generate(TextRequest("left", ids, LONG))
    await gen.__anext__()
    await small_engine.shutdown()
    with pytest.raises(WorkerUnavailable):
        async for _ in gen:
            pass
    assert not small_engine.is_alive()


def test_models_with_sliding_window_layers_are_refused(tiny_text_dir: Path) -> None:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from pureinfer.engines.text.engine import HFTextEngine

    config = Qwen2Config(vocab_size=1700, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, use_sliding_window=True,
                         sliding_window=8, max_window_layers=0)
    with pytest.raises(ValueError, match="sliding-window"):
        HFTextEngine(Qwen2ForCausalLM(config), AutoTokenizer.from_pretrained(tiny_text_dir), model_id="windowed")
