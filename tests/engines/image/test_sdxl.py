"""The SDXL engine on the real tiny pipeline: exact seeds alone and batched, deadlines, OOM."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from pureinfer.engines.base import ImageEngine, ImageRequest
from pureinfer.errors import OutOfMemory, WorkerTimeout


def req(seed: int, n: int = 1, **kw: object) -> ImageRequest:
    values: dict[str, object] = dict(request_id=f"r{seed}", prompt="a red castle at sunset",
                                     negative_prompt="blurry", width=64, height=64, steps=3, cfg_scale=7.0,
                                     seed=seed, num_images=n)
    values.update(kw)
    return ImageRequest(**values)  # type: ignore[arg-type]


def px(image: object) -> np.ndarray:
    return np.asarray(image)


async def wait_until(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition of the engine's state (never a fixed sleep: the engine thread may be slow
    to get there on a loaded machine); the timeout only ends a test that would otherwise hang."""
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < timeout
        await asyncio.sleep(0.02)


async def wait_idle(engine, timeout: float = 60.0) -> None:
    await wait_until(lambda: not (engine.num_running or engine.num_waiting), timeout)


def test_engine_satisfies_the_protocol(engine) -> None:
    assert isinstance(engine, ImageEngine)
    assert engine.max_prompt_tokens == 77
    assert set(engine.schedulers) >= {"euler", "euler_a", "dpmpp_2m", "ddim"}
    assert engine.count_tokens("a cat") == 4  # BOS, a, cat, EOS
    assert engine.count_tokens("cat " * 100) == 102


async def test_same_seed_same_pixels_and_image_i_uses_seed_plus_i(engine) -> None:
    one = await engine.generate(req(11))
    again = await engine.generate(req(11))
    three = await engine.generate(req(10, n=3))
    assert three.seeds == [10, 11, 12]
    assert len(three.images) == 3 and three.images[0].size == (64, 64)
    assert np.array_equal(px(one.images[0]), px(again.images[0]))
    assert np.array_equal(px(one.images[0]), px(three.images[1]))  # image 1 of seed 10 == seed 11
    assert not np.array_equal(px(three.images[0]), px(three.images[1]))


@pytest.mark.parametrize("scheduler", ["euler", "euler_a"])
async def test_batched_requests_keep_their_pixels(engine, scheduler: str) -> None:
    """Concurrent compatible requests share one pipeline call; each image equals its lone run."""
    a, b, c = (req(5, scheduler=scheduler), req(70, n=2, prompt="a blue dragon", negative_prompt="",
                                                    scheduler=scheduler), req(9, scheduler=scheduler))
    alone = [await engine.generate(r) for r in (a, b, c)]
    assert all(r.batch_size == r.seeds.__len__() for r in alone)
    together = await asyncio.gather(*(engine.generate(r) for r in (a, b, c)))
    assert [r.batch_size for r in together] == [4, 4, 4]
    assert sum(r.first_in_batch for r in together) == 1
    for lone, batched in zip(alone, together, strict=True):
        assert lone.seeds == batched.seeds
        for x, y in zip(lone.images, batched.images, strict=True):
            assert np.array_equal(px(x), px(y))


async def test_incompatible_requests_do_not_share_a_call(engine) -> None:
    small, big = await asyncio.gather(engine.generate(req(1)), engine.generate(req(1, width=128)))
    assert small.batch_size == 1 and big.batch_size == 1
    assert big.images[0].size == (128, 64)


@pytest.mark.parametrize("scheduler", ["dpmpp_2m", "ddim"])
async def test_every_scheduler_runs_and_is_reproducible(engine, scheduler: str) -> None:
    x = await engine.generate(req(3, scheduler=scheduler))
    y = await engine.generate(req(3, scheduler=scheduler))
    assert np.array_equal(px(x.images[0]), px(y.images[0]))


async def test_deadline_stops_the_denoising_loop(engine) -> None:
    await wait_idle(engine)
    before = engine.stats()
    t0 = time.monotonic()
    with pytest.raises(WorkerTimeout):
        await engine.generate(req(1, steps=1000, deadline=time.monotonic() + 0.5))
    assert time.monotonic() - t0 < 60  # a bound on waiting; the steps below show it stopped early
    await wait_idle(engine)
    after = engine.stats()
    assert after["abandoned_batches"] == before["abandoned_batches"] + 1
    assert after["denoise_steps"] - before["denoise_steps"] < 200  # stopped, did not run to the end
    assert engine.is_alive()
    assert len((await engine.generate(req(2))).images) == 1


async def test_cancelled_request_is_dropped(engine) -> None:
    await wait_idle(engine)
    before = engine.stats()
    task = asyncio.create_task(engine.generate(req(1, steps=1000)))
    await wait_until(lambda: engine.stats()["denoise_steps"] > before["denoise_steps"])  # its batch runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_idle(engine)
    after = engine.stats()
    assert after["abandoned_batches"] == before["abandoned_batches"] + 1
    assert after["denoise_steps"] - before["denoise_steps"] < 200


@pytest.mark.parametrize("scheduler", ["euler", "euler_a", "dpmpp_2m", "ddim"])
async def test_progress_is_reported_after_each_step_in_order_up_to_total(engine, scheduler: str) -> None:
    import threading

    calls: list[tuple[int, int, str]] = []
    result = await engine.generate(req(4, steps=5, scheduler=scheduler,
                                       on_progress=lambda s, t: calls.append((s, t, threading.current_thread().name))))
    assert [(s, t) for s, t, _ in calls] == [(i, 5) for i in range(1, 6)]
    assert {name for *_, name in calls} == {"sdxl-engine"}  # the engine thread: the caller hands it over
    assert len(result.images) == 1


async def test_requests_sharing_a_batch_each_get_their_own_progress(engine) -> None:
    seen: dict[str, list[int]] = {"a": [], "b": []}
    a = req(5, steps=3, on_progress=lambda s, t: seen["a"].append(s))
    b = req(6, n=2, steps=3, on_progress=lambda s, t: seen["b"].append(s))
    results = await asyncio.gather(engine.generate(a), engine.generate(b), engine.generate(req(7, steps=3)))
    assert [r.batch_size for r in results] == [4, 4, 4]  # one call, three requests (one without a callback)
    assert seen == {"a": [1, 2, 3], "b": [1, 2, 3]}


async def test_a_failing_progress_callback_does_not_fail_the_generation(engine) -> None:
    def broken(step: int, total: int) -> None:
        raise RuntimeError("the caller's bug")

    assert len((await engine.generate(req(8, steps=2, on_progress=broken))).images) == 1


async def test_cancel_stops_a_running_request_between_steps(engine) -> None:
    """Cancelled once progress shows it running: no step is reported after the stop."""
    await wait_idle(engine)
    before = engine.stats()
    steps: list[int] = []
    task = asyncio.create_task(engine.generate(req(1, steps=1000, on_progress=lambda s, t: steps.append(s))))
    t0 = time.monotonic()
    while len(steps) < 2:  # running, not merely queued
        assert time.monotonic() - t0 < 60 and not task.done()
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_idle(engine)
    after = engine.stats()
    assert after["abandoned_batches"] == before["abandoned_batches"] + 1
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < 1000


async def test_device_oom_becomes_out_of_memory_and_the_engine_stays_ready(engine) -> None:
    import torch

    calls = {"n": 0}

    def explode(module, args, kwargs):  # an injected allocator failure inside the UNet
        calls["n"] += 1
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    handle = engine._pipe.unet.register_forward_pre_hook(explode, with_kwargs=True)
    try:
        with pytest.raises(OutOfMemory) as info:
            await engine.generate(req(4))
    finally:
        handle.remove()
    assert calls["n"] == 1
    assert info.value.code.value == "OUT_OF_MEMORY" and info.value.http_status == 503
    assert engine.is_alive()
    assert engine.stats()["failed_batches"] >= 1
    assert len((await engine.generate(req(4))).images) == 1


async def test_without_guidance_batches_stay_exact(engine) -> None:
    """cfg_scale <= 1 turns classifier-free guidance off: one UNet row per image instead of two."""
    alone = await engine.generate(req(31, cfg_scale=1.0))
    pair = await engine.generate(req(30, n=2, cfg_scale=1.0))
    assert np.array_equal(px(alone.images[0]), px(pair.images[1]))


async def test_unstarted_engine_is_unavailable_and_a_full_queue_overloads(engine, image_settings) -> None:
    from pureinfer.engines.image.sdxl import SDXLImageEngine
    from pureinfer.errors import WorkerOverloaded, WorkerUnavailable

    await wait_idle(engine)  # the second engine borrows the pipeline while the first one is idle
    small = SDXLImageEngine(engine._pipe, image_settings.model_copy(update={"max_queued_requests": 1}),
                            model_id="same", device="cpu")
    with pytest.raises(WorkerUnavailable):
        await small.generate(req(1))
    await small.start()
    try:
        running = asyncio.create_task(small.generate(req(1, steps=1000)))
        await wait_until(lambda: small.num_running == 1 and small.num_waiting == 0)  # taken off the queue
        queued = asyncio.create_task(small.generate(req(2, steps=1000)))
        await wait_until(lambda: small.num_waiting == 1)
        with pytest.raises(WorkerOverloaded) as info:
            await small.generate(req(3))
        assert info.value.http_status == 503 and info.value.retry_after
        for task in (running, queued):
            task.cancel()
        await asyncio.gather(running, queued, return_exceptions=True)
        await wait_idle(small)
    finally:
        await small.shutdown()
    assert not small.is_alive()


async def test_a_batch_that_runs_out_of_memory_is_retried_request_by_request(engine) -> None:
    import torch

    a, b = req(41), req(42, prompt="a green field")
    alone = [await engine.generate(r) for r in (a, b)]
    calls = {"n": 0}

    def explode_once(module, args, kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")

    await wait_idle(engine)
    failed_before = engine.stats()["failed_batches"]
    handle = engine._pipe.unet.register_forward_pre_hook(explode_once, with_kwargs=True)
    try:
        together = await asyncio.gather(engine.generate(a), engine.generate(b))
    finally:
        handle.remove()
    assert engine.stats()["failed_batches"] == failed_before + 1
    assert [r.batch_size for r in together] == [1, 1]  # each request ran on its own after the OOM
    for lone, retried in zip(alone, together, strict=True):
        assert np.array_equal(px(lone.images[0]), px(retried.images[0]))


def test_loader_picks_single_file_or_folder_and_falls_back_from_the_fp16_variant(image_model_dir, image_settings,
                                                                                 monkeypatch) -> None:
    import torch
    from diffusers import StableDiffusionXLPipeline

    from pureinfer.engines.image.sdxl import load_image_engine

    # A folder without an fp16 variant still loads in fp16 (from the fp32 files).
    half = load_image_engine(image_settings.model_copy(update={"dtype": "float16"}))
    assert half.dtype == torch.float16 and half.model_id == str(image_model_dir)

    # A single .safetensors checkpoint goes through from_single_file.
    seen: dict[str, object] = {}

    def fake_single_file(path: str, **kwargs: object):
        seen.update(path=path, **kwargs)
        return StableDiffusionXLPipeline.from_pretrained(image_model_dir)

    monkeypatch.setattr(StableDiffusionXLPipeline, "from_single_file", staticmethod(fake_single_file))
    ckpt = "/models/community_sdxl_v10.safetensors"
    single = load_image_engine(image_settings.model_copy(update={"image_model": ckpt}))
    assert seen == {"path": ckpt, "dtype": torch.float32}
    assert single.model_id == ckpt and single.count_tokens("a cat") == 4
