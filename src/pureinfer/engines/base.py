"""What the layers above expect of an engine. Nothing above `engines/` imports torch.

An engine trusts what it receives: `api/` validated every request once, at admission, into the
fully specified types below (every default filled in, the seed drawn, the limits checked). An
engine only asserts its preconditions (a broken one is a programming error, never a caller's),
so no check runs twice and no coded error is raised a second time.

A text engine takes a `TextRequest` (token ids + sampling parameters) and yields text deltas.
Cancellation is part of the contract: closing the async generator (``aclose()``), or cancelling
the task that iterates it, aborts the request inside the engine within one decoding step.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Per-request decoding parameters, fully specified: no defaults here, the API surfaces own
    them (`api/native/protocol.py` DEFAULTS), and the seed is always settled, so the response can
    report it and the same request gives the same tokens."""

    max_tokens: int
    temperature: float  # 0: greedy
    top_p: float
    top_k: int  # 0 disables top-k
    min_tokens: int  # EOS and stop strings cannot end the output before this many tokens
    repetition_penalty: float  # 1.0: off
    stop: tuple[str, ...]
    seed: int  # sampling draws only from this request's generator, seeded with it

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True, slots=True)
class TextRequest:
    """What a text engine runs: a non-empty prompt whose length plus `params.max_tokens` fits the
    engine's context (admission checked both)."""

    request_id: str
    prompt_ids: Sequence[int]
    params: SamplingParams
    # Monotonic-clock deadline (time.monotonic()), queue time included: the engine stops the
    # request when it passes and reports WORKER_TIMEOUT. None: no deadline.
    deadline: float | None = None


@dataclass(slots=True)
class TextDelta:
    """New output since the previous delta. The last delta of a request has `finish_reason` set."""

    text: str
    token_ids: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None


@runtime_checkable
class TextEngine(Protocol):
    """A loaded causal LM plus its tokenizer, owning the device and the decoding loop."""

    model_id: str  # where it was loaded from (path or hub id)
    n_ctx: int  # context length: prompt tokens + generated tokens must fit
    has_chat_template: bool

    @property
    def control_tokens(self) -> frozenset[str]:
        """Every string the tokenizer turns into a special or added token instead of text (chat
        markup such as ``<|im_start|>``). Admission refuses message contents that hold one."""
        ...

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        """The tokenizer's own template, `add_generation_prompt=True`: the only prompt transformation.
        Requires `has_chat_template`; a template that refuses the conversation is INVALID_PAYLOAD."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of a rendered prompt, exactly as the model will receive them."""
        ...

    def generate(self, request: TextRequest) -> AsyncGenerator[TextDelta, None]: ...

    @property
    def num_running(self) -> int: ...

    @property
    def num_waiting(self) -> int: ...

    def is_alive(self) -> bool:
        """False once the engine's loop has died; the worker then turns unready and exits."""
        ...

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...


# --- Images -----------------------------------------------------------------------------------
#
# An image engine takes validated requests and returns PIL images. Requests that agree on
# `ImageRequest.batch_key()` may share one pipeline call; image i of a request is drawn from
# seed + i whatever else shares the call. Cancelling the awaiting task drops the request: a queued
# one never runs, a running one stops at the end of the current denoising step (its batch stops
# when nobody waits for it any more); a passed deadline raises WorkerTimeout the same way.
#
# Progress: `ImageRequest.on_progress`, when set, is called as `on_progress(step, total)` after
# each denoising step, steps counted from 1 to `total` (the request's `steps`), FROM THE ENGINE
# THREAD, never for a request that was given up. It must be quick and must not touch the event
# loop's objects directly: a caller on an event loop hands the call over with
# `loop.call_soon_threadsafe` (api/image/serving.py does, and offers an on-loop callback). An
# exception it raises is logged and ignored: progress never fails a generation.

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class ImageRequest:
    request_id: str
    prompt: str
    negative_prompt: str  # "" means none
    width: int
    height: int
    steps: int
    cfg_scale: float
    seed: int  # resolved (never -1); image i uses seed + i
    num_images: int = 1
    scheduler: str = "euler"  # one of ImageEngine.schedulers
    # Monotonic-clock deadline (time.monotonic()); the engine stops the request when it passes.
    deadline: float | None = None
    # (step, total) after each denoising step, from the engine thread (see above).
    on_progress: ProgressCallback | None = field(default=None, compare=False, repr=False)

    def batch_key(self) -> tuple[int, int, int, str, float]:
        """Requests with equal keys can share one denoising loop."""
        return (self.width, self.height, self.steps, self.scheduler, self.cfg_scale)

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.num_images)]


@dataclass(slots=True)
class ImageResult:
    images: list[Any]  # PIL.Image.Image, one per seed, in seed order
    seeds: list[int]
    batch_size: int  # images in the pipeline call that produced these (this request's and others')
    queue_s: float  # waiting for a batch slot
    run_s: float  # the pipeline call
    first_in_batch: bool = True  # exactly one result per pipeline call says True (per-batch metrics)


@runtime_checkable
class ImageEngine(Protocol):
    """A loaded SDXL pipeline, owning the device and a batching loop in its own thread."""

    model_id: str
    max_prompt_tokens: int  # the CLIP window, BOS and EOS included (77)
    schedulers: tuple[str, ...]

    def count_tokens(self, text: str) -> int:
        """CLIP tokens of `text`, BOS and EOS included, before any truncation."""
        ...

    async def generate(self, request: ImageRequest) -> ImageResult: ...

    @property
    def num_running(self) -> int: ...

    @property
    def num_waiting(self) -> int: ...

    def stats(self) -> dict[str, Any]: ...

    def is_alive(self) -> bool: ...

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...
