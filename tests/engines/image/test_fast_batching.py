"""One UNet call per batch (the CUDA default): the same seed alone twice gives the same pixels,
and alone vs batched differ by rounding only."""

from __future__ import annotations

import asyncio

import numpy as np

from pureinfer.engines.base import ImageRequest


def req(seed: int, prompt: str = "a red lighthouse at dusk") -> ImageRequest:
    return ImageRequest(request_id=f"fast-{seed}", prompt=prompt, negative_prompt="blurry", width=64, height=64,
                        steps=4, cfg_scale=6.0, seed=seed)


def px(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


async def test_fast_batching_differs_from_alone_by_rounding_only(engine, image_settings) -> None:
    from pureinfer.engines.image.sdxl import SDXLImageEngine
    from tests.engines.image.test_sdxl import wait_idle

    await wait_idle(engine)  # borrow the session's pipeline while its engine is idle
    fast = SDXLImageEngine(engine._pipe, image_settings.model_copy(update={
        "image_exact_batching": False, "image_batch_wait_ms": 300, "image_warmup": False}), model_id="same",
        device="cpu")
    assert not fast.exact_batching
    await fast.start()
    try:
        requests = [req(seed, prompt) for seed, prompt in
                    [(1, "a red lighthouse at dusk"), (2, "a blue forest"), (3, "a castle"), (4, "neon rain")]]
        alone = [px((await fast.generate(r)).images[0]) for r in requests]
        again = px((await fast.generate(requests[0])).images[0])
        assert np.array_equal(alone[0], again)  # the same seed alone: identical pixels
        batched = await asyncio.gather(*(fast.generate(r) for r in requests))
        assert [r.batch_size for r in batched] == [4, 4, 4, 4]  # one UNet call for the batch
        diffs = [np.abs(a - px(b.images[0])) for a, b in zip(alone, batched, strict=True)]
        assert max(int(d.max()) for d in diffs) <= 2
        assert max(float(d.mean()) for d in diffs) < 0.5
    finally:
        await fast.shutdown()


async def test_warm_up_runs_at_start(image_settings) -> None:
    from pureinfer.engines.image.sdxl import load_image_engine

    eng = load_image_engine(image_settings)
    steps = eng.stats()["denoise_steps"]
    await eng.start()
    try:
        assert eng.stats()["denoise_steps"] == steps + 1  # one step at the smallest size, before serving
        assert eng.stats()["batches"] == 0  # not counted as served work
    finally:
        await eng.shutdown()


async def test_a_fatal_device_error_kills_the_image_engine(engine, image_settings) -> None:
    """A CUDA error that is not an out-of-memory leaves the context broken: the engine dies (the
    worker's watchdog turns it unready and exits), the request gets INTERNAL_ERROR."""
    from pureinfer.engines.image.sdxl import SDXLImageEngine
    from pureinfer.errors import InternalError
    from tests.engines.image.test_sdxl import wait_idle

    await wait_idle(engine)
    doomed = SDXLImageEngine(engine._pipe, image_settings.model_copy(update={"image_warmup": False}),
                             model_id="same", device="cpu")
    await doomed.start()

    def illegal_access(module, args, kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")

    handle = engine._pipe.unet.register_forward_pre_hook(illegal_access, with_kwargs=True)
    try:
        try:
            await doomed.generate(req(9))
            raise AssertionError("the request should fail")
        except InternalError:
            pass
        for _ in range(100):
            if not doomed.is_alive():
                break
            await asyncio.sleep(0.02)
        assert not doomed.is_alive()
    finally:
        handle.remove()
        await doomed.shutdown()
    assert engine.is_alive()  # the shared engine only lent its pipeline
