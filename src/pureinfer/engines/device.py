"""Device selection and the one place where library exceptions become product errors.

`translate_device_errors()` is used around every model call (text and image):

* a device out-of-memory becomes OUT_OF_MEMORY, and the worker stays ready. The caller frees
  the allocator's cache (`free_device_cache()`) AFTER leaving its ``except`` block, with the
  error `detached()` from the original exception: while that exception (or a chain holding it)
  is alive, its traceback keeps the failed call's frames and so their tensors allocated;
* a CUDA error that is not an out-of-memory (a device-side assert, an illegal memory access,
  a launch failure) leaves the CUDA context broken for good: it becomes `DeviceLost`, which
  engines let through so their loop dies, the worker turns unready and exits non-zero, and its
  supervisor restarts it (the same path as any dead engine);
* our own errors and cancellation pass through; anything else is logged here and becomes
  INTERNAL_ERROR without its text leaving the process.
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


class DeviceLost(InternalError):
    """The device's context is broken (non-OOM CUDA error): fatal to the engine that saw it."""


# Messages of CUDA errors after which the context cannot be used again.
_FATAL_CUDA = ("device-side assert", "illegal memory access", "illegal instruction", "unspecified launch failure",
               "misaligned address", "uncorrectable ecc error", "cublas_status_execution_failed",
               "cublas_status_internal_error", "cudnn_status_execution_failed")


def is_fatal_device_error(exc: BaseException) -> bool:
    """A CUDA error that poisons the context (not an out-of-memory)."""
    import torch

    if is_oom(exc):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)
    text = str(exc).lower()
    if accelerator_error is not None and isinstance(exc, accelerator_error):
        return True
    return isinstance(exc, RuntimeError) and ("cuda error" in text or any(m in text for m in _FATAL_CUDA))


def detached(exc: PureInferError) -> PureInferError:
    """`exc` without its cause, context and traceback: handed to callers (and kept in their
    channels) it no longer holds the failed call's frames and tensors."""
    exc.__cause__ = None
    exc.__context__ = None
    exc.__traceback__ = None
    return exc


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
            log.warning("device out of memory during %s", what)
            raise OutOfMemory("The device ran out of memory", {"during": what}) from None
        if is_fatal_device_error(exc):
            log.critical("fatal device error during %s: the engine stops", what, exc_info=True)
            raise DeviceLost("The device failed", {"during": what}) from None
        log.exception("unexpected error during %s", what)
        raise InternalError("Internal error") from None


def set_threads(n: int) -> None:
    """torch's intra-op threads for this process (the worker's --threads)."""
    import torch

    torch.set_num_threads(n)
