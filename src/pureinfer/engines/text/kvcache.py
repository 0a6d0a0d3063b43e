"""The text engine's KV cache: one preallocated slot tensor per layer, planned at start-up.

Layout: per layer one tensor ``[2, slots + 1, n_kv_heads, slot_len + 1, head_dim]`` (keys, values).
A running request owns one slot for its whole life; its position ``p`` lives at
``[:, slot, :, p]``. The extra slot and the extra position are scratch: the rows that a
fixed-shape decode step computes for nobody (padding up to a CUDA-graph bucket, a slot whose
request is still prefilling) write there and never touch a real request's cache.

Why slots and not pages: with every request's keys contiguous per head, the decode attention of
a step is ONE ``scaled_dot_product_attention`` over the view ``cache[:, :S, :, :L]`` (S = highest
decoding slot + 1, L = longest decoding length) with a length mask: the kernel reads each
cache in place, nothing is gathered or padded into a new tensor (the previous design copied
every running request's cache into a padded tensor in every layer of every step, and wrote new
keys/values with one copy per request and layer). New keys/values of all the step's tokens go
in with one ``index_put_`` per layer. Pages would pack memory tighter for mixed lengths, but
reading them needs a paged kernel (FlexAttention with a page table, or vLLM's) — torch's SDPA
cannot read pages in place, and a gather would bring the copy back. The price of slots is
that a slot holds ``slot_len`` positions whatever the request needs: admission checks that
prompt + max_tokens fits (OUT_OF_MEMORY otherwise: the request can never fit the plan) and
queues requests while every slot is taken.

Lowest-free allocation keeps the occupied slots packed at the bottom, so S stays close to
the number of running requests and the few holes cost one wasted row each.

Memory plan (`plan_slot_len`): on CUDA the cache gets ``gpu_memory_fraction`` of the device
minus what is already allocated (weights of every loaded model) and minus a reserve (the
image engine's measured peak); ``slot_len`` is what fits, capped by the model's context. On
the CPU no budget is given by default: the tensors are allocated with ``torch.empty`` and the
operating system backs a page only when a position is first written, so untouched context
costs address space, not memory.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch

SLOT_LEN_ALIGN = 256  # slot_len is rounded down to a multiple of this (kernel-friendly strides)


@dataclass(frozen=True, slots=True)
class KVShape:
    n_layers: int
    n_kv_heads: int
    head_dim: int

    @classmethod
    def of(cls, config: Any) -> KVShape:
        n_kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(int(config.num_hidden_layers), int(n_kv), int(head_dim))

    def bytes_per_token(self, dtype: torch.dtype) -> int:
        """Keys and values of one position in every layer."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * torch.empty((), dtype=dtype).element_size()


class KVBudgetTooSmall(ValueError):
    """The planned memory cannot hold even a minimal context per slot."""


def plan_slot_len(shape: KVShape, dtype: torch.dtype, *, slots: int, n_ctx: int, budget_bytes: int | None,
                  min_slot_len: int = SLOT_LEN_ALIGN) -> int:
    """Positions per slot: the model's context, or what `budget_bytes` holds for `slots` slots
    (plus the scratch slot and position), aligned down to `SLOT_LEN_ALIGN`."""
    if budget_bytes is None:
        return n_ctx
    per_slot = budget_bytes // ((slots + 1) * shape.bytes_per_token(dtype)) - 1
    slot_len = min(n_ctx, per_slot)
    if slot_len >= SLOT_LEN_ALIGN:
        slot_len -= slot_len % SLOT_LEN_ALIGN
    if slot_len < min_slot_len:
        raise KVBudgetTooSmall(
            f"the KV cache budget ({budget_bytes / 2**30:.2f} GiB) holds {max(per_slot, 0)} positions per slot for "
            f"{slots} slots; at least {min_slot_len} are needed: lower the running-request limit or give the "
            "cache more memory (--gpu-memory-fraction)")
    return slot_len


def cuda_kv_budget(device: torch.device, *, fraction: float, reserve_bytes: int = 0, share: int = 1) -> int:
    """Bytes the KV cache may take on `device`: `fraction` of the card, minus what the process
    has allocated already (the weights), minus `reserve_bytes`, split over `share` engines."""
    free, total = torch.cuda.mem_get_info(device)
    allocated = torch.cuda.memory_reserved(device)
    others = total - free - allocated  # other processes on the same card
    budget = int(fraction * total) - allocated - others - reserve_bytes
    return max(budget, 0) // max(share, 1)


class SlotKVCache:
    """The cache tensors and the slot allocator (allocation is called from the engine thread only;
    the lock makes the counters safe to read from anywhere)."""

    def __init__(self, shape: KVShape, *, slots: int, slot_len: int, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        if slots < 1 or slot_len < 1:
            raise ValueError("slots >= 1 and slot_len >= 1 are required")
        self.shape = shape
        self.slots = slots
        self.slot_len = slot_len
        self.scratch_slot = slots
        self.scratch_pos = slot_len
        self.dtype = dtype
        self.device = torch.device(device)
        self.layers = [
            torch.empty(2, slots + 1, shape.n_kv_heads, slot_len + 1, shape.head_dim, dtype=dtype, device=device)
            for _ in range(shape.n_layers)
        ]
        self.clean = 0  # positions 0..clean-1 of every slot hold finite values
        self._free = list(range(slots))  # kept sorted: the lowest free slot is taken first
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.layers)

    @property
    def num_free(self) -> int:
        return len(self._free)

    def fits(self, n_tokens: int) -> bool:
        return n_tokens <= self.slot_len

    def ensure_clean(self, keys: int) -> None:
        """Make positions ``0..keys-1`` of every slot safe to read. Call it BEFORE a step writes:
        everything from `clean` on has never been written, so zeroing it loses nothing."""
        if keys <= self.clean:
            return
        end = min(self.slot_len + 1, -(-keys // SLOT_LEN_ALIGN) * SLOT_LEN_ALIGN)
        for layer in self.layers:
            layer[:, :, :, self.clean : end].zero_()
        self.clean = end

    def acquire(self) -> int | None:
        """The lowest free slot, or None when all are taken."""
        with self._lock:
            return self._free.pop(0) if self._free else None

    def release(self, slot: int) -> None:
        with self._lock:
            if slot in self._free or not 0 <= slot < self.slots:
                raise ValueError(f"slot {slot} is not in use")
            self._free.append(slot)
            self._free.sort()
