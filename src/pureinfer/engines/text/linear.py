"""Linear layers for a decoding batch on CPU: oneDNN's packed product (or ``(W @ xᵀ)ᵀ``).

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

oneDNN with prepacked weights (`pack`): MKL's sgemm is slow on this machine's AMD cores at the
narrow shapes of a decoding batch; oneDNN's JIT kernels pick their code by instruction set, not by
vendor. Measured interleaved (7 repeats, medians, load 3.6-4.6), 16 rows: lm_head 151936x896 361 ms
instead of 565 ms (1 thread) and 279 ms instead of 423 ms (2 threads); gate+up 9728x896 25 ms
instead of 37 ms. The packed weights are a second copy (the model's own stay for every other
caller): on the CPU the engine's linears take twice the weights' memory. A lone row keeps
``F.linear``: a request running alone sees exactly a batch-1 ``generate()``'s products.

Sibling projections in one product (`fuse_siblings`): an attention block's q/k/v projections
and an MLP's gate/up projections read the same input; inside the engine they run as ONE matrix
product over their concatenated weights (each module's weight becomes a view of the fused
tensor: no memory is added), and the siblings return their slices of it. On the CPU every
product is a parallel region that waits for all threads: 24 layers x 5 instead of 24 x 7 per
step, which counts when the cores are shared (see bench/README.md). Any other call order falls
back to each module's own product.
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


SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def install(model: torch.nn.Module) -> int:
    """Route the model's ``nn.Linear`` layers through `_forward`; returns how many."""
    n = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.forward = types.MethodType(_forward, module)  # type: ignore[method-assign]
            n += 1
    return n


def _packing_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")


def _packed(weight: torch.Tensor) -> torch.Tensor | None:
    if not _packing_available() or weight.dtype != torch.float32:
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_size=16)


def pack(model: torch.nn.Module) -> int:
    """Prepack every engine linear (sibling groups as one) for oneDNN; returns how many products.
    Skipped (0) when a second copy of the weights would not leave half the free memory free."""
    import psutil

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    if 2 * weights > psutil.virtual_memory().available:
        return 0
    n = 0
    groups: set[int] = set()
    for module in model.modules():
        if type(module) is not torch.nn.Linear:
            continue
        group: _Siblings | None = getattr(module, "_pureinfer_siblings", None)
        if group is not None:
            if id(group) not in groups:
                groups.add(id(group))
                group.packed = _packed(group.weight)
                n += group.packed is not None
            continue
        module._pureinfer_packed = _packed(module.weight)  # type: ignore[assignment]
        n += module._pureinfer_packed is not None
    return n


class _Siblings:
    """Linears that read the same input, computed as one product (see the module docstring)."""

    def __init__(self, members: list[torch.nn.Linear]) -> None:
        self.members = members
        self.splits = [m.out_features for m in members]
        self.weight = torch.cat([m.weight.detach() for m in members])
        self.bias = None if members[0].bias is None else torch.cat([m.bias.detach() for m in members])
        start = 0
        for m, n in zip(members, self.splits, strict=True):
            m.weight = torch.nn.Parameter(self.weight[start : start + n], requires_grad=False)
            if self.bias is not None:
                m.bias = torch.nn.Parameter(self.bias[start : start + n], requires_grad=False)
            start += n
        self.packed: torch.Tensor | None = None
        self._input: torch.Tensor | None = None
        self._parts: list[torch.Tensor] = []

    def forward(self, member: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        i = self.members.index(member)
        if i == 0:
            self._input = x
            self._parts = list(_product(x, self.weight, self.bias, self.packed).split(self.splits, dim=-1))
        elif self._input is not x or not self._parts:
            return _product(x, member.weight, member.bias, None)
        out = self._parts[i]
        if i == len(self.members) - 1:
            self._input, self._parts = None, []
        return out


def fuse_siblings(model: torch.nn.Module) -> int:
    """Group each block's sibling projections (`SIBLINGS`); returns how many groups."""
    n = 0
    for module in model.modules():
        for names in SIBLINGS:
            members = [getattr(module, name, None) for name in names]
            if not all(type(m) is torch.nn.Linear for m in members):
                continue
            linears: list[torch.nn.Linear] = members  # type: ignore[assignment]
            if len({m.in_features for m in linears}) != 1 or len({m.bias is None for m in linears}) != 1:
                continue
            group = _Siblings(linears)
            for m in linears:
                m._pureinfer_siblings = group  # type: ignore[assignment]
            n += 1
    return n


def _forward(self: torch.nn.Linear, x: torch.Tensor) -> Any:
    if getattr(_state, "active", False) and x.device.type == "cpu":
        group: _Siblings | None = getattr(self, "_pureinfer_siblings", None)
        if group is not None:
            return group.forward(self, x)
        return _product(x, self.weight, self.bias, getattr(self, "_pureinfer_packed", None))
    return F.linear(x, self.weight, self.bias)


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
             packed: torch.Tensor | None) -> torch.Tensor:
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    if MIN_ROWS <= rows <= MAX_ROWS and packed is not None:
        flat = x.reshape(rows, x.shape[-1])
        out = torch.ops.mkldnn._linear_pointwise(flat, packed, bias, "none", [], "")
        return out.view(*x.shape[:-1], weight.shape[0])
    if MIN_ROWS <= rows <= MAX_ROWS:
        flat = x.reshape(rows, x.shape[-1]).t()
        out = torch.mm(weight, flat) if bias is None else torch.addmm(bias[:, None], weight, flat)
        return out.t().contiguous().view(*x.shape[:-1], weight.shape[0])
    return F.linear(x, weight, bias)
