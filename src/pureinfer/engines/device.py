"""Device selection and the one place where library exceptions become product errors.

`translate_device_errors()` is used around every model call (text and image): a device
out-of-memory becomes OUT_OF_MEMORY after freeing the allocator cache, so the worker stays
ready; our own errors and cancellation pass through; anything else is logged here and
becomes INTERNAL_ERROR without its text leaving the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from pureinfer.errors import InternalError, OutOfMemory, PureInferError

log = logging.getLogger(__name__)


def pick_device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(requested: str, device: str, *, image: bool = False):  # -> torch.dtype
    """auto: bf16 for text and fp16 for SDXL on CUDA; fp32 on CPU (half is slow or missing there)."""
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if device.startswith("cuda"):
        return torch.float16 if image else torch.bfloat16
    return torch.float32


def free_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # Some kernels raise a plain RuntimeError with the allocator's message.
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@contextlib.contextmanager
def translate_device_errors(what: str = "model call") -> Iterator[None]:
    try:
        yield
    except (PureInferError, asyncio.CancelledError, GeneratorExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        if is_oom(exc):
            free_device_cache()
            log.warning("device out of memory during %s; cache freed", what)
            raise OutOfMemory("The device ran out of memory", {"during": what}) from exc
        log.exception("unexpected error during %s", what)
        raise InternalError("Internal error") from exc
