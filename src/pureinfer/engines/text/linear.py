"""Linear layers for a decoding batch on CPU: ``(W @ xᵀ)ᵀ`` instead of ``x @ Wᵀ``.

A decoding step multiplies a handful of rows (one per running request) by every weight matrix.
For that shape MKL's sgemm is markedly faster with the weight as the left operand. Measured on
the 2-core development CPU (fp32, median of repeated runs, Qwen2.5-0.5B shapes):

    rows  weight           F.linear    mm(W, x.T)
      16  lm_head 151936x896  182 ms       126 ms
      16  mlp up  4864x896    4.2 ms       2.8 ms
      16  mlp down 896x4864   2.8 ms       1.9 ms
      64  lm_head             342 ms       269 ms
     256  lm_head            1275 ms      1342 ms   (prefill sizes: no gain, not used)
       1  any                 same         same      (not used: a lone request keeps
                                                     generate()'s exact shapes)

Results are the same dot products (bitwise equal at 16 and 64 rows in that measurement). The
switch is only active inside the engine thread's forward (`engine_linears()`), so the same
model object called elsewhere — e.g. the benchmark's `generate()` baselines — runs stock
``F.linear``. CPU only; GPUs keep cuBLAS's own choice.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

MIN_ROWS = 2
MAX_ROWS = 64

_state = threading.local()


@contextlib.contextmanager
def engine_linears() -> Iterator[None]:
    """Within this block (in this thread) the installed linears use the decoding-batch path."""
    _state.active = True
    try:
        yield
    finally:
        _state.active = False


def install(model: torch.nn.Module) -> int:
    """Route the model's ``nn.Linear`` layers through `_forward`; returns how many."""
    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.forward = types.MethodType(_forward, module)  # type: ignore[method-assign]
            n += 1
    return n


def _forward(self: torch.nn.Linear, x: torch.Tensor) -> Any:
    if getattr(_state, "active", False) and x.device.type == "cpu":
        rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
        if MIN_ROWS <= rows <= MAX_ROWS:
            flat = x.reshape(rows, x.shape[-1]).t()
            out = (torch.mm(self.weight, flat) if self.bias is None
                   else torch.addmm(self.bias[:, None], self.weight, flat))
            return out.t().contiguous().view(*x.shape[:-1], self.out_features)
    return F.linear(x, self.weight, self.bias)
