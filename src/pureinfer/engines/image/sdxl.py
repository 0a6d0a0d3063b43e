"""The SDXL image engine: a diffusers pipeline driven by one thread, with request batching.

How a request travels:
1. `generate()` (event loop) wraps the validated `ImageRequest` in a `Job` and queues it; it
   awaits a future until the request's deadline.
2. The engine thread takes the next batch from `BatchQueue` (same size, steps, scheduler and CFG
   scale; up to `image_max_batch` images) and runs one pipeline call for it:
   each request's prompts are encoded on their own, one CPU `torch.Generator` per image seeded
   with seed + i, a fresh scheduler, and `callback_on_step_end` checking every step whether
   anyone still waits for the batch (a cancelled request is given up there, between two steps)
   and calling each live request's `on_progress(step, total)` (engines/base.py).
3. Results, or the translated error (OUT_OF_MEMORY, INTERNAL_ERROR), go back to each future;
   a batch of several requests that runs out of memory is retried one request at a time first
   (after leaving the ``except`` block and freeing the allocator's cache: the exception's
   traceback holds the failed call's tensors). A CUDA error that is not an out-of-memory kills
   the engine (engines/device.py): the worker turns unready and exits so it is restarted.

Exact pixels under batching. Batching changes tensor shapes, and CPU/GPU kernels pick their
algorithms by shape: measured on the tiny demo model on CPU, a batched UNet call differs from
the lone call by ~1e-6 (the small-M GEMM of the time embedding), enough to flip uint8 pixels.
With `image_exact_batching` (the CPU default) the batch shares one denoising loop, scheduler and
Python overhead, but each image's UNet call keeps the shape it has alone (its uncond/cond pair),
so an image's pixels never depend on who shared the call. Without it (the CUDA default) the
whole batch is one UNet call: the throughput batching promises on a GPU, at the price of
rounding-level differences between alone and batched (at most 2/255 on a pixel, under 0.5/255 on
average: tested on the CPU, measured by `bench image` on the GPU). The same seed alone always
gives the same pixels.

Decoding: the pipeline stops at the latents and the engine decodes them itself, one image at a
time (a batch's VAE activations at 1024² would double the peak memory, and its pixels would
depend on the batch), tiled above one megapixel. fp16 SDXL's stock VAE overflows in fp16, so
diffusers converts it to fp32 and back on every call; here it is converted once at load (or
replaced by an fp16-safe VAE, `image_vae_fp16_fix`, that decodes in fp16).

Start-up: `start()` runs one generation before the engine serves (kernels chosen, cuDNN
autotuned, allocator warm: the first user does not pay for it), at the largest batch on CUDA, and
records the peak memory it took: the text engines plan their KV cache around it.

Generators live on the CPU so a seed gives the same initial noise on every device (as A1111's
default). Per-call state stays in locals; the pipeline object is only touched by this thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pureinfer.engines.base import ImageRequest, ImageResult
from pureinfer.engines.device import (
    DeviceLost,
    detached,
    free_device_cache,
    pick_device,
    pick_dtype,
    translate_device_errors,
)
from pureinfer.engines.image.batcher import BatchQueue, Job
from pureinfer.errors import OutOfMemory, PureInferError, WorkerOverloaded, WorkerTimeout, WorkerUnavailable
from pureinfer.settings import WorkerSettings

log = logging.getLogger(__name__)

TILE_ABOVE_PIXELS = 1024 * 1024  # the VAE decodes in tiles above one megapixel

# Name on the wire -> (diffusers scheduler class, config overrides).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "ddim": ("DDIMScheduler", {}),
}


class _BatchAbandoned(PureInferError):
    """Raised inside the denoising loop when nobody waits for the batch any more."""


@dataclass(eq=False)
class _Pending:
    """What the engine thread needs to answer one request."""

    request: ImageRequest
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[ImageResult]
    job: Job = field(init=False)

    def abandoned(self, now: float) -> bool:
        deadline = self.request.deadline
        return self.job.cancelled or self.future.done() or (deadline is not None and now >= deadline)

    def progress(self, step: int, total: int) -> None:
        """The request's progress callback, on the engine thread; its failure is only logged."""
        callback = self.request.on_progress
        if callback is None:
            return
        try:
            callback(step, total)
        except Exception:
            log.exception("image progress callback failed (request %s)", self.request.request_id)

    def settle(self, result: ImageResult | None = None, error: BaseException | None = None) -> None:
        def _set() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)  # type: ignore[arg-type]

        with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody waits
            self.loop.call_soon_threadsafe(_set)


@dataclass
class _Stats:
    images: int = 0
    requests: int = 0
    batches: int = 0
    run_s: float = 0.0
    denoise_steps: int = 0
    abandoned_batches: int = 0
    failed_batches: int = 0
    batch_sizes: Counter[int] = field(default_factory=Counter)


class SDXLImageEngine:
    """`ImageEngine` over a `StableDiffusionXLPipeline`; see the module docstring."""

    max_prompt_tokens = 77

    def __init__(self, pipe: Any, settings: WorkerSettings, *, model_id: str, device: str) -> None:
        self._pipe = pipe
        self.model_id = model_id
        self.device = device
        self.dtype = pipe.unet.dtype
        self.schedulers = tuple(SCHEDULERS)
        cuda = str(device).startswith("cuda")
        exact = settings.image_exact_batching
        self.exact_batching = (not cuda) if exact is None else exact
        self._settings = settings
        self.warmup_peak_bytes = 0  # device memory the start-up generation took (CUDA)
        self.max_queued = settings.max_queued_requests
        self.max_prompt_tokens = int(pipe.tokenizer.model_max_length)
        # Private copies for counting: the pipeline's tokenizers are used by the engine thread,
        # and a fast tokenizer must not be called from two threads at once.
        self._count_tokenizers = [copy.deepcopy(t) for t in (pipe.tokenizer, pipe.tokenizer_2) if t is not None]
        self._base_scheduler_config = dict(pipe.scheduler.config)
        self._queue = BatchQueue(settings.image_max_batch, settings.image_batch_wait_ms / 1000.0)
        self._thread: threading.Thread | None = None
        self._dead: BaseException | None = None
        self._running = 0
        self._stats = _Stats()
        self._lock = threading.Lock()
        pipe.set_progress_bar_config(disable=True)
        # diffusers warns with the cut-off prompt text when it truncates; serving reports the counts
        # instead, and prompt text reaches the logs only as `log_prompts` allows.
        logging.getLogger(type(pipe).__module__).setLevel(logging.ERROR)
        if settings.attention_slicing:
            pipe.enable_attention_slicing()
        self._always_tile = settings.vae_tiling
        if self.dtype == _torch().float16 and getattr(pipe.vae.config, "force_upcast", False):
            pipe.vae.to(dtype=_torch().float32)  # once, not on every call (diffusers' upcast_vae)
        if settings.image_channels_last:
            pipe.unet.to(memory_format=_torch().channels_last)
            pipe.vae.to(memory_format=_torch().channels_last)
        if settings.image_compile:
            pipe.unet = _torch().compile(pipe.unet, fullgraph=False)

    # -- ImageEngine -----------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return max(len(tok(text, truncation=False, verbose=False).input_ids) for tok in self._count_tokenizers)

    async def generate(self, request: ImageRequest) -> ImageResult:
        if not self.is_alive():
            raise WorkerUnavailable("The image engine is not running")
        if self._queue.num_jobs >= self.max_queued:
            raise WorkerOverloaded("Too many image requests are queued", {"queued": self._queue.num_jobs})
        loop = asyncio.get_running_loop()
        pending = _Pending(request, loop, loop.create_future())
        pending.job = Job(key=request.batch_key(), size=request.num_images, payload=pending)
        try:
            self._queue.put(pending.job)
        except RuntimeError:  # closed by shutdown
            raise WorkerUnavailable("The image engine is shutting down") from None
        timeout = None if request.deadline is None else max(0.0, request.deadline - time.monotonic())
        try:
            return await asyncio.wait_for(pending.future, timeout)
        except TimeoutError:
            raise WorkerTimeout(
                "The image request passed its deadline; generation was stopped",
                {"steps": request.steps, "num_images": request.num_images},
            ) from None
        finally:
            pending.job.cancelled = True  # done or given up: either way the engine may drop it

    @property
    def num_running(self) -> int:
        return self._running

    @property
    def num_waiting(self) -> int:
        return self._queue.num_images

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self._stats
            return {
                "images_generated": s.images,
                "requests_completed": s.requests,
                "batches": s.batches,
                "seconds_per_image": round(s.run_s / s.images, 4) if s.images else None,
                "denoise_steps": s.denoise_steps,
                "abandoned_batches": s.abandoned_batches,
                "failed_batches": s.failed_batches,
                "batch_sizes": dict(sorted(s.batch_sizes.items())),
                "queue_depth": self.num_waiting,
                "running": self._running,
            }

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._dead is None

    async def start(self) -> None:
        if self._thread is None:
            if self._settings.image_warmup:
                await asyncio.to_thread(self._warm_up)
            self._thread = threading.Thread(target=self._loop, name="sdxl-engine", daemon=True)
            self._thread.start()

    async def shutdown(self) -> None:
        self._queue.close()
        for job in self._queue.drain():
            job.payload.settle(error=WorkerUnavailable("The image engine is shutting down"))
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 60)

    # -- engine thread ---------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while (batch := self._queue.next_batch()) is not None:
                self._run_batch([job.payload for job in batch])
        except BaseException as exc:  # the worker turns unready and its supervisor restarts it
            self._dead = exc
            log.exception("image engine loop died")
            self._queue.close()
            for job in self._queue.drain():
                job.payload.settle(error=WorkerUnavailable("The image engine stopped"))
            # Logged above and recorded in `_dead`: the watchdog sees it; re-raising would only
            # print the same traceback again through threading's excepthook.

    def _run_batch(self, batch: list[_Pending]) -> None:
        t0 = time.monotonic()
        first_req = batch[0].request
        size = sum(p.request.num_images for p in batch)
        self._running = size
        failure: PureInferError | None = None
        try:
            with translate_device_errors("image generation"):
                images = self._denoise(batch)
        except _BatchAbandoned:
            with self._lock:
                self._stats.abandoned_batches += 1
            for p in batch:
                p.settle(error=WorkerTimeout("The image request passed its deadline; generation was stopped"))
            return
        except DeviceLost as exc:
            for p in batch:
                p.settle(error=exc)
            raise  # the CUDA context is broken: the engine loop dies, the worker restarts
        except PureInferError as exc:
            failure = detached(exc)
        finally:
            self._running = 0
        if failure is not None:  # outside the except block: the failed call's tensors are released
            free_device_cache()
            with self._lock:
                self._stats.failed_batches += 1
            live = [p for p in batch if not p.abandoned(time.monotonic())]
            if isinstance(failure, OutOfMemory) and len(live) > 1:
                # The batch did not fit: each request gets its own try before anyone sees the error.
                log.warning("image batch of %d images ran out of memory; retrying its requests one by one", size)
                for p in live:
                    self._run_batch([p])
                return
            for p in batch:
                p.settle(error=failure)
            return
        run_s = time.monotonic() - t0
        log.info("image batch done", extra={
            "request_ids": [p.request.request_id for p in batch], "batch_size": size,
            "size": f"{first_req.width}x{first_req.height}", "steps": first_req.steps, "seconds": round(run_s, 3)})
        with self._lock:
            self._stats.batches += 1
            self._stats.images += size
            self._stats.requests += len(batch)
            self._stats.run_s += run_s
            self._stats.batch_sizes[size] += 1
        offset = 0
        for i, p in enumerate(batch):
            n = p.request.num_images
            p.settle(ImageResult(
                images=images[offset:offset + n], seeds=p.request.seeds, batch_size=size,
                queue_s=t0 - p.job.enqueued_at, run_s=run_s, first_in_batch=(i == 0),
            ))
            offset += n

    def _denoise(self, batch: list[_Pending]) -> list[Any]:
        import diffusers
        import torch

        pipe = self._pipe
        first = batch[0].request
        cfg = first.cfg_scale > 1.0

        # 1. Prompts: each request encoded alone, so its embeddings never depend on the batch.
        with torch.no_grad():
            encoded = [
                pipe.encode_prompt(
                    prompt=p.request.prompt, device=self.device, num_images_per_prompt=p.request.num_images,
                    do_classifier_free_guidance=cfg, negative_prompt=p.request.negative_prompt or None,
                )
                for p in batch
            ]
        embeds, neg_embeds, pooled, neg_pooled = (
            torch.cat([e[i] for e in encoded]) if cfg or i in (0, 2) else None for i in range(4)
        )

        # 2. Noise: one CPU generator per image, seeded seed + i.
        generators = [torch.Generator("cpu").manual_seed(s) for p in batch for s in p.request.seeds]

        # 3. A fresh scheduler: its step state belongs to this call only.
        cls_name, overrides = SCHEDULERS[first.scheduler]
        pipe.scheduler = getattr(diffusers, cls_name).from_config(self._base_scheduler_config, **overrides)

        # 4. Report progress to whoever still waits; stop as soon as nobody does.
        def on_step_end(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            with self._lock:
                self._stats.denoise_steps += 1
            now = time.monotonic()
            live = [p for p in batch if not p.abandoned(now)]
            if not live:
                raise _BatchAbandoned("batch abandoned")
            for p in live:
                p.progress(step + 1, first.steps)
            return kwargs

        # 5. Denoise and decode.
        unet_forward = pipe.unet.forward
        if self.exact_batching and len(generators) > 1:
            pipe.unet.forward = _per_image_forward(unet_forward, len(generators))
        try:
            latents = pipe(
                prompt_embeds=embeds, negative_prompt_embeds=neg_embeds, pooled_prompt_embeds=pooled,
                negative_pooled_prompt_embeds=neg_pooled, width=first.width, height=first.height,
                num_inference_steps=first.steps, guidance_scale=first.cfg_scale, generator=generators,
                output_type="latent", callback_on_step_end=on_step_end,
            ).images
        finally:
            if "forward" in vars(pipe.unet):
                del pipe.unet.forward
        return self._decode(latents, tiled=self._always_tile or first.width * first.height > TILE_ABOVE_PIXELS)

    def _decode(self, latents: Any, *, tiled: bool) -> list[Any]:
        """Latents -> PIL images, one image per VAE call, in the VAE's own dtype."""
        import torch

        vae = self._pipe.vae
        cfg = vae.config
        dtype = next(vae.post_quant_conv.parameters()).dtype if vae.post_quant_conv is not None else vae.dtype
        mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
        vae.use_tiling = tiled
        images = []
        with torch.no_grad():
            for z in latents.split(1):
                z = z.to(dtype)
                if mean is not None and std is not None:
                    m = torch.tensor(mean, device=z.device, dtype=dtype).view(1, -1, 1, 1)
                    sd = torch.tensor(std, device=z.device, dtype=dtype).view(1, -1, 1, 1)
                    z = z * sd / cfg.scaling_factor + m
                else:
                    z = z / cfg.scaling_factor
                images.append(vae.decode(z, return_dict=False)[0])
        return list(self._pipe.image_processor.postprocess(torch.cat(images), output_type="pil"))

    def _warm_up(self) -> None:
        """One generation before serving; on CUDA at the largest batch and 1024², recording its peak."""
        import torch

        from pureinfer.engines.base import ImageRequest

        cuda = str(self.device).startswith("cuda")
        lo, hi = self._settings.image_size_bounds()
        size = max(lo, min(hi, 1024)) if cuda else lo
        n = self._settings.image_max_batch if cuda else 1
        request = ImageRequest(request_id="warm-up", prompt="warm-up", negative_prompt="", width=size, height=size,
                               steps=2 if cuda else 1, cfg_scale=5.0, seed=0, num_images=n)
        loop = asyncio.new_event_loop()  # never run: it only holds the future nobody awaits
        pending = _Pending(request, loop, loop.create_future())
        pending.job = Job(key=request.batch_key(), size=n, payload=pending)
        t0 = time.monotonic()
        if cuda:
            torch.cuda.synchronize(self.device)
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        with translate_device_errors("image warm-up"):
            self._denoise([pending])
        if cuda:
            torch.cuda.synchronize(self.device)
            self.warmup_peak_bytes = torch.cuda.max_memory_allocated(self.device) - before
        loop.close()
        log.info("image engine warmed up", extra={"seconds": round(time.monotonic() - t0, 2), "size": size,
                                                  "batch": n, "peak_gib": round(self.warmup_peak_bytes / 2**30, 2)})


def _torch() -> Any:
    import torch

    return torch


def _per_image_forward(forward: Any, num_images: int) -> Any:
    """Run the UNet once per image with exactly the rows it has when generated alone.

    The pipeline stacks the batch as [uncond_0..uncond_{n-1}, cond_0..cond_{n-1}] with CFG, or
    [cond_0..cond_{n-1}] without; image i alone is the pair (uncond_i, cond_i), or (cond_i).
    """
    import torch

    def take(value: Any, idx: torch.Tensor, rows: int) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == rows:
            return value.index_select(0, idx.to(value.device))
        if isinstance(value, dict):
            return {k: take(v, idx, rows) for k, v in value.items()}
        return value

    def forward_per_image(sample: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        rows = sample.shape[0]
        per = rows // num_images
        if per * num_images != rows:
            return forward(sample, *args, **kwargs)
        outs, order = [], []
        for i in range(num_images):
            idx = torch.tensor([i + k * num_images for k in range(per)])
            res = forward(take(sample, idx, rows), *(take(a, idx, rows) for a in args),
                          **{k: take(v, idx, rows) for k, v in kwargs.items()})
            outs.append(res[0] if isinstance(res, tuple) else res.sample)
            order.append(idx)
        merged = torch.empty((rows, *outs[0].shape[1:]), dtype=outs[0].dtype, device=outs[0].device)
        for idx, out in zip(order, outs, strict=True):
            merged[idx.to(merged.device)] = out
        return (merged,)

    return forward_per_image


def load_image_engine(settings: WorkerSettings) -> SDXLImageEngine:
    """Load the configured SDXL model (diffusers folder, hub id or single `.safetensors` file).

    Blocking (seconds to minutes); call it from a thread. fp16 on CUDA, fp32 on CPU.
    """
    import torch
    from diffusers import StableDiffusionXLPipeline

    source = settings.image_model_path()
    device = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device, image=True)
    if source.endswith((".safetensors", ".ckpt")):
        pipe = StableDiffusionXLPipeline.from_single_file(source, dtype=dtype)
    else:
        pipe = None
        if dtype == torch.float16:
            try:  # hub repos ship fp16 weights as a variant: half the download
                pipe = StableDiffusionXLPipeline.from_pretrained(source, dtype=dtype, variant="fp16")
            except (OSError, ValueError):
                pipe = None
        if pipe is None:
            pipe = StableDiffusionXLPipeline.from_pretrained(source, dtype=dtype)
    pipe.to(device)
    log.info("image model %s loaded on %s (%s)", source, device, dtype)
    return SDXLImageEngine(pipe, settings, model_id=source, device=device)
