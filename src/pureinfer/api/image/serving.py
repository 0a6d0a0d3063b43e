"""The bridge between the image wire models and the image engine (and the object store).

`ImageServing.generate` is the one path for the native `/generate`, OpenAI's images API and the
role-`all` dispatcher, in TGI's order:
1. take a permit from the one admission gate (api/admission.py), which drain waits for;
2. validate once what depends on settings or the model (size bounds, CLIP token counts) into
   the engine's `ImageRequest`, with the seed and the deadline settled;
3. await the engine (which batches and stops at the deadline);
4. encode each image as PNG with its A1111 "parameters" chunk (plus a WEBP thumbnail), store it
   or inline it as base64;
5. record metrics and answer in the native shape; the permit is returned in every path.

Two ways in. `generate()` does all of it in one call (OpenAI's route, the role-`all`
dispatcher, a queue consumer). `admit()` does steps 1-2 and returns an `ImageGeneration` that
the caller owns and closes (`aclose()`, once, in every path): a streaming response admits first,
so a refusal still gets its HTTP status, then runs the generation while it streams.

Progress. `generate(..., on_progress=f)` and `ImageGeneration.result(on_progress=f)` call
`f(step, total)` ON THE EVENT LOOP after each denoising step (steps 1..total, total = the
request's steps): the engine calls back from its own thread (engines/base.py) and this module
hands each call over with `loop.call_soon_threadsafe`, so `f` may touch asyncio objects but must
not block. `ImageGeneration.events()` turns the same calls into the SSE events of
`stream: true`: `{"progress": {"step", "total"}, "request_id"}` per step, then the full response.
Cancelling the awaiting task (a client that went away, a cancelled job) stops the request in the
engine between two steps.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pureinfer.api.admission import Admission, Permit
from pureinfer.api.image import metrics
from pureinfer.api.image.pnginfo import GenerationParameters, encode_png, encode_thumbnail
from pureinfer.api.image.protocol import (
    ImageExecutionMetadata,
    ImageGenerateRequest,
    ImageGenerateResponse,
    ImageItem,
    ImageMetadata,
    TokenCounts,
)
from pureinfer.engines.base import ImageEngine, ImageRequest, ImageResult
from pureinfer.errors import InvalidPayload, PureInferError, TokenLimitExceeded
from pureinfer.logging import prompt_for_log, request_id_var
from pureinfer.settings import WorkerSettings
from pureinfer.storage import ObjectStore, new_key

log = logging.getLogger("pureinfer.image")

DEFAULT_SIZE = 1024  # SDXL's native size; clamped into the configured bounds

# (step, total) after each denoising step, called on the event loop (see the module docstring).
ProgressHandler = Callable[[int, int], None]


@dataclass(frozen=True)
class ValidImageRequest:
    """An image request that passed validation: what the engine runs, and what the answer reports."""

    request: ImageRequest
    tokens: TokenCounts
    output: str  # "url" | "b64_json"


class ImageServing:
    def __init__(self, engine: ImageEngine, store: ObjectStore, settings: WorkerSettings,
                 admission: Admission) -> None:
        self.engine = engine
        self.store = store
        self.settings = settings
        self.admission = admission
        self.min_size, self.max_size = settings.image_size_bounds()
        self.default_size = max(self.min_size, min(DEFAULT_SIZE, self.max_size) // 8 * 8)
        self.model_name = model_name(settings, engine.model_id)
        self._started = time.monotonic()
        self._requests = 0
        self._images = 0
        self._failures = 0
        self._recent: deque[tuple[float, float]] = deque(maxlen=256)  # (latency_s, s/image)
        metrics.QUEUE_DEPTH.set_function(lambda: engine.num_waiting)

    # -- validation ------------------------------------------------------------------------------

    def resolve_size(self, req: ImageGenerateRequest, size_field: str | None = None) -> tuple[int, int]:
        """Width and height, or INVALID_PAYLOAD naming every bad one (`size_field` for OpenAI's "size")."""
        problems = []
        values = {"width": req.width or self.default_size, "height": req.height or self.default_size}
        for name, value in values.items():
            msg = None
            if value % 8:
                msg = f"must be a multiple of 8 (got {value})"
            elif not self.min_size <= value <= self.max_size:
                msg = f"must be within [{self.min_size}, {self.max_size}] (got {value})"
            if msg:
                problems.append({"field": size_field or name, "message": f"{name} {msg}" if size_field else msg})
        if problems:
            summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise InvalidPayload(f"Invalid request: {summary}", {"fields": problems})
        return values["width"], values["height"]

    def count_tokens(self, req: ImageGenerateRequest) -> TokenCounts:
        """CLIP token counts; TOKEN_LIMIT_EXCEEDED when one is over the window and truncate is off."""
        limit = self.engine.max_prompt_tokens
        prompt = self.engine.count_tokens(req.prompt)
        negative = self.engine.count_tokens(req.negative_prompt) if req.negative_prompt else 0
        over = {name: n for name, n in (("prompt", prompt), ("negative_prompt", negative)) if n > limit}
        if over and not req.truncate:
            names = " and ".join(over)
            raise TokenLimitExceeded(
                f"The {names} has more CLIP tokens than the model reads ({limit}, BOS and EOS included); "
                "shorten it or send truncate: true",
                {"prompt_tokens": prompt, "negative_prompt_tokens": negative, "max_tokens": limit,
                 "fields": sorted(over)},
            )
        # The pipeline's tokenizers cut at the window; we only report what they drop.
        return TokenCounts(
            prompt_tokens=prompt, negative_prompt_tokens=negative, max_tokens=limit,
            prompt_tokens_dropped=max(0, prompt - limit), negative_prompt_tokens_dropped=max(0, negative - limit),
        )

    def validate(self, req: ImageGenerateRequest, request_id: str, size_field: str | None,
                 admitted_at: float) -> ValidImageRequest:
        """Everything checked once; the seed drawn when the caller sent -1 (image i uses seed + i)."""
        width, height = self.resolve_size(req, size_field)
        tokens = self.count_tokens(req)
        seed = req.seed if req.seed >= 0 else secrets.randbelow(2**32 - req.num_images)
        request = req.to_engine_request(request_id, seed=seed, width=width, height=height,
                                        deadline=admitted_at + self.settings.request_timeout_s)
        return ValidImageRequest(request, tokens, req.output)

    # -- generation ------------------------------------------------------------------------------

    def admit(self, req: ImageGenerateRequest, request_id: str, *, size_field: str | None = None,
              base_url: str | None = None) -> ImageGeneration:
        """A permit, then one validation (steps 1-2); the caller owns the generation and closes it.
        `base_url`: how the client reached us (for local file URLs when no public base URL is
        configured); `size_field`: the field that carried the size (OpenAI's "size")."""
        t0 = time.monotonic()
        try:
            permit = self.admission.acquire("image")
            try:
                valid = self.validate(req, request_id, size_field, t0)
            except BaseException:
                permit.release()
                raise
        except BaseException as exc:
            self._failed(exc)
            raise
        return ImageGeneration(self, valid, permit, base_url, t0)

    async def generate(self, req: ImageGenerateRequest, request_id: str, *, size_field: str | None = None,
                       base_url: str | None = None, on_progress: ProgressHandler | None = None) -> dict[str, Any]:
        """The native response for `req`, in one call (see `admit` for the arguments; progress as
        in the module docstring)."""
        # Log records carry the request id through the context variable (set here when the caller,
        # e.g. a queue consumer, did not), never through `extra`, which the record factory owns.
        token = request_id_var.set(request_id) if request_id_var.get() is None else None
        try:
            async with self.admit(req, request_id, size_field=size_field, base_url=base_url) as g:
                return await g.result(on_progress=on_progress)
        finally:
            if token is not None:
                request_id_var.reset(token)

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        outcome = exc.code.value if isinstance(exc, PureInferError) else type(exc).__name__
        metrics.IMAGE_REQUESTS.labels(outcome=outcome).inc()

    async def _generate(self, valid: ValidImageRequest, base_url: str | None, t0: float) -> dict[str, Any]:
        req = valid.request
        # 1. Run.
        result = await self.engine.generate(req)
        # 2. Encode and store.
        params = [
            GenerationParameters(req.prompt, req.negative_prompt, req.steps, req.scheduler, req.cfg_scale,
                                 s, req.width, req.height, self.model_name)
            for s in result.seeds
        ]
        items = await asyncio.gather(*(self._item(img, p, valid.output, base_url) for img, p in zip(
            result.images, params, strict=True)))
        # 3. Account and answer.
        elapsed = time.monotonic() - t0
        self._record(result, elapsed)
        log.info("image request done", extra={
            "seed": req.seed, "num_images": req.num_images, "size": f"{req.width}x{req.height}",
            "steps": req.steps, "scheduler": req.scheduler, "batch_size": result.batch_size,
            "queue_s": round(result.queue_s, 3), "generation_time": round(elapsed, 3),
            "prompt_preview": prompt_for_log(req.prompt, self.settings.log_prompts)})
        first = items[0]
        return ImageGenerateResponse(
            image_url=first.url, thumbnail_url=first.thumbnail_url,
            metadata=ImageMetadata(prompt=req.prompt, seed=req.seed, steps=req.steps, cfg_scale=req.cfg_scale),
            images=list(items), negative_prompt=req.negative_prompt, scheduler=req.scheduler,  # type: ignore[arg-type]
            width=req.width, height=req.height, steps=req.steps, cfg_scale=req.cfg_scale, model_used=self.model_name,
            generation_time=round(elapsed, 3), tokens=valid.tokens, request_id=req.request_id,
            execution_metadata=ImageExecutionMetadata(
                model_used=self.model_name, seeds=result.seeds, num_images=len(items), batch_size=result.batch_size,
                queue_time=round(result.queue_s, 3), denoise_time=round(result.run_s, 3),
                device=str(getattr(self.engine, "device", "")) or None),
        ).model_dump()

    async def _item(self, image: Any, params: GenerationParameters, output: str,
                    base_url: str | None) -> ImageItem:
        png = await asyncio.to_thread(encode_png, image, params)
        if output == "b64_json":
            return ImageItem(b64_json=base64.b64encode(png).decode("ascii"), seed=params.seed,
                             width=params.width, height=params.height)
        stem = secrets.token_hex(16)
        stored = await self.store.put(new_key("png", stem=stem), png, "image/png", request_base_url=base_url)
        thumbnail_url = None
        if self.settings.image_thumbnails:
            webp = await asyncio.to_thread(encode_thumbnail, image)
            thumbnail_url = (await self.store.put(new_key("webp", stem=stem, suffix="thumb"), webp,
                                                  "image/webp", request_base_url=base_url)).url
        return ImageItem(url=stored.url, thumbnail_url=thumbnail_url, seed=params.seed, width=params.width,
                         height=params.height)

    def _record(self, result: ImageResult, elapsed: float) -> None:
        n = len(result.images)
        per_image = result.run_s / max(1, result.batch_size)
        self._requests += 1
        self._images += n
        self._recent.append((elapsed, per_image))
        metrics.IMAGES_GENERATED.inc(n)
        metrics.IMAGE_LATENCY.observe(elapsed)
        for _ in range(n):
            metrics.SECONDS_PER_IMAGE.observe(per_image)
        if result.first_in_batch:
            metrics.BATCH_SIZE.observe(result.batch_size)

    # -- introspection and lifecycle -------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        engine = self.engine
        return {
            "model": self.model_name,
            "source": engine.model_id,
            "device": getattr(engine, "device", None),
            "dtype": str(getattr(engine, "dtype", "")).removeprefix("torch.") or None,
            "schedulers": list(engine.schedulers),
            "size_bounds": [self.min_size, self.max_size],
            "default_size": self.default_size,
            "max_prompt_tokens": engine.max_prompt_tokens,
            "max_images_per_request": 8,
            "max_batch": self.settings.image_max_batch,
            "exact_batching": getattr(engine, "exact_batching", self.settings.image_exact_batching),
            "outputs": ["url", "b64_json"],
            "storage": self.store.describe(),
        }

    def stats(self) -> dict[str, Any]:
        recent = list(self._recent)
        return {
            **self.engine.stats(),
            "requests": self._requests,
            "failed_requests": self._failures,
            "average_response_time": round(sum(r[0] for r in recent) / len(recent), 4) if recent else None,
            "recent_seconds_per_image": round(sum(r[1] for r in recent) / len(recent), 4) if recent else None,
        }

    def is_alive(self) -> bool:
        return self.engine.is_alive()

    async def shutdown(self) -> None:
        await self.engine.shutdown()


class ImageGeneration:
    """One admitted image request: its valid form and its permit. `result()` or `events()` runs
    it once; `aclose()` ends it exactly once in every path (also when a streaming response was
    cancelled before its body began, see api/sse.py): it cancels the run, which stops the request
    in the engine between two steps, and returns the permit after that."""

    def __init__(self, serving: ImageServing, valid: ValidImageRequest, permit: Permit, base_url: str | None,
                 admitted_at: float) -> None:
        self.serving = serving
        self.valid = valid
        self._permit = permit
        self._base_url = base_url
        self._t0 = admitted_at
        self._task: asyncio.Task[dict[str, Any]] | None = None
        self._closed = False

    @property
    def request_id(self) -> str:
        return self.valid.request.request_id

    async def result(self, on_progress: ProgressHandler | None = None) -> dict[str, Any]:
        """The native response; `on_progress(step, total)` on the event loop after each step."""
        if self._task is not None:
            raise RuntimeError("an image generation runs once")
        valid = self.valid
        if on_progress is not None:
            valid = dataclasses.replace(valid, request=dataclasses.replace(
                valid.request, on_progress=_on_loop(asyncio.get_running_loop(), on_progress)))
        self._task = asyncio.ensure_future(self.serving._generate(valid, self._base_url, self._t0))
        try:
            response = await asyncio.shield(self._task)  # aclose() cancels the task itself
        except BaseException as exc:
            self._task.cancel()
            self.serving._failed(exc)
            raise
        metrics.IMAGE_REQUESTS.labels(outcome="ok").inc()
        return response

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """The SSE events of `stream: true`: progress per step, then the full response."""
        steps: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
        run = asyncio.ensure_future(self.result(on_progress=lambda s, t: steps.put_nowait((s, t))))
        try:
            while True:
                next_step = asyncio.ensure_future(steps.get())
                await asyncio.wait((next_step, run), return_when=asyncio.FIRST_COMPLETED)
                if not next_step.done():
                    next_step.cancel()
                    break
                yield self._progress_event(*next_step.result())
            while not steps.empty():  # steps handed over before the run ended, not yet sent
                yield self._progress_event(*steps.get_nowait())
            yield run.result()
        finally:
            run.cancel()
            with contextlib.suppress(BaseException):
                await run

    def _progress_event(self, step: int, total: int) -> dict[str, Any]:
        return {"progress": {"step": step, "total": total}, "request_id": self.request_id}

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        finally:
            self._permit.release()

    async def __aenter__(self) -> ImageGeneration:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _on_loop(loop: asyncio.AbstractEventLoop, handler: ProgressHandler) -> Callable[[int, int], None]:
    """An engine-thread callback that runs `handler` on `loop` (dropped once the loop is closed)."""
    def call(step: int, total: int) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(handler, step, total)
    return call


def model_name(settings: WorkerSettings, model_id: str) -> str:
    """A short name for responses and PNG metadata: the hub id, or a local checkpoint's stem."""
    if settings.demo and not settings.image_model:
        return "pureinfer-demo-sdxl"
    path = Path(model_id)
    if path.exists():
        return path.stem if path.is_file() else path.name
    return model_id
