"""Ragged attention over the slot KV cache: how several requests share one forward pass.

A step packs the new tokens of every scheduled request into ONE row (``[1, T]``): first one
decode row per slot ``0..S-1`` (row ``r`` is slot ``r``'s next token; a slot with no decoding
request there is a hole whose row writes to the cache's scratch position and is never sampled),
then the prefill chunks of new requests, each with its own ``position_ids``. Every linear
layer, norm and MLP of the model runs once over all T tokens: that is where batching pays.
Attention is the only part that has to know where one request ends and the next begins, so we
register an attention function with transformers' ``AttentionInterface`` that

1. writes the new keys/values of all T tokens into the cache with ONE ``index_put_`` per layer
   (``cache[:, slot, :, position]``, the indices built on the host once per step);
2. runs the S decode rows as ONE ``scaled_dot_product_attention`` call over the cache view
   ``[:, :S, :, :L]`` — read in place, no copy — with a ``[S, 1, 1, L]`` length mask built once per
   step (none when every row has the same length, e.g. a lone request: then the call has
   exactly the shapes of a batch-1 ``generate()``). transformers' ``sdpa_attention_forward``
   packs the query heads of a key/value head together (``pack_gqa``), so grouped-query models
   never repeat their keys;
3. runs each prefill chunk against its own slot's view, with the shapes of a batch-1
   ``generate()`` (``is_causal`` for a fresh prompt, an offset-causal mask for a later chunk).

The step's index tensors are built on the host (see engines/text/step.py): nothing here reads
a device value back, so the decode call can be captured in a CUDA graph (engines/text/graphs.py)
with the same code.

Why not paged: see engines/text/kvcache.py (SDPA cannot read pages in place). On the CPU the
per-request copies of the old design were not kept anywhere: at the bench's short contexts
attention is under 1% of a step there (torch.profiler, 0.5B shape, one thread), so the in-place
read costs nothing on the CPU and removes the copies that grow with the context on a GPU.

Model support: any transformers causal LM whose attention modules call
``ALL_ATTENTION_FUNCTIONS`` with post-RoPE ``(query, key, value)`` and expose ``layer_idx``
(Qwen2/2.5/3, Llama, ...). Sliding-window layers are not supported (the engine refuses such
models rather than attend past the window). The model's own mask construction is skipped by
passing ``attention_mask={"full_attention": None, "sliding_attention": None}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from pureinfer.engines.text.kvcache import SlotKVCache

ATTN_IMPLEMENTATION = "pureinfer_ragged"
STEP_KWARG = "pureinfer_step"


@dataclass(slots=True)
class Prefill:
    """One request's prompt chunk in a step: ``length`` tokens at positions ``start..``, found at
    ``offset..`` of the packed token axis, written to ``slot``."""

    slot: int
    start: int
    length: int
    offset: int
    mask: torch.Tensor | None = None  # offset-causal mask for a chunk after position 0


@dataclass(slots=True)
class StepBatch:
    """Where every token of a step goes, and what the decode rows attend to.

    ``write_slots``/``write_pos`` ([T], device): cache coordinates of each packed token.
    ``decode_lengths`` ([S], device): keys each decode row sees; None when all S rows see
    exactly ``decode_len`` keys (no mask needed)."""

    cache: SlotKVCache
    n_decode: int  # S: rows 0..S-1 are slots 0..S-1
    decode_len: int  # L: the longest decode row's keys
    write_slots: torch.Tensor
    write_pos: torch.Tensor
    decode_lengths: torch.Tensor | None
    prefills: list[Prefill] = field(default_factory=list)
    n_tokens: int = 0
    _mask: torch.Tensor | None = None

    def decode_mask(self) -> torch.Tensor | None:
        """[S, 1, 1, L] True where a decode row has a key (built in the first layer, then reused)."""
        if self.decode_lengths is None:
            return None
        if self._mask is None:
            keys = torch.arange(self.decode_len, device=self.decode_lengths.device)
            self._mask = (keys[None, :] < self.decode_lengths[:, None])[:, None, None, :]
        return self._mask


def chunk_mask(start: int, length: int, device: torch.device) -> torch.Tensor | None:
    """Query i (absolute position start+i) sees keys 0..start+i; None for a fresh prompt (causal)."""
    if start == 0 or length == 1:
        return None
    q = torch.arange(start, start + length, device=device)[:, None]
    k = torch.arange(start + length, device=device)[None, :]
    return (k <= q)[None, None]


def ragged_attention(
    module: torch.nn.Module,
    query: torch.Tensor,  # [1, H, T, D]
    key: torch.Tensor,  # [1, Hkv, T, D]
    value: torch.Tensor,  # [1, Hkv, T, D]
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    step: StepBatch | None = kwargs.pop(STEP_KWARG, None)
    if step is None:  # a plain forward (e.g. the model used outside the engine)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    cache = step.cache.layers[cast(int, module.layer_idx)]  # [2, slots+1, Hkv, slot_len+1, D]
    n_heads, head_dim = query.shape[1], query.shape[3]
    # 1. Every token's new key/value into its slot and position: one indexed write.
    cache[:, step.write_slots, :, step.write_pos] = torch.stack((key[0], value[0])).permute(2, 0, 1, 3)
    if not step.prefills:  # decode only: the output is the decode call's, no assembly
        o, _ = _decode(module, query, cache, step, scaling)
        return o.transpose(0, 1), None
    out = query.new_empty(1, step.n_tokens, n_heads, head_dim)
    # 2. The decode rows: one SDPA call over the slots' caches, read in place.
    if step.n_decode:
        o, _ = _decode(module, query[:, :, : step.n_decode], cache, step, scaling)
        out[0, : step.n_decode] = o[:, 0]
    # 3. Prefill chunks: exactly the shapes of a batch-1 generate().
    for seg in step.prefills:
        lo, hi = seg.offset, seg.offset + seg.length
        o, _ = sdpa_attention_forward(
            module,
            query[:, :, lo:hi],
            cache[0, seg.slot : seg.slot + 1, :, : seg.start + seg.length],
            cache[1, seg.slot : seg.slot + 1, :, : seg.start + seg.length],
            seg.mask,
            dropout=0.0,
            scaling=scaling,
            is_causal=seg.start == 0,
        )
        out[:, lo:hi] = o
    return out, None


def _decode(module: torch.nn.Module, query: torch.Tensor, cache: torch.Tensor, step: StepBatch,
            scaling: float | None) -> tuple[torch.Tensor, None]:
    """Queries ``[1, H, S, D]`` of the decode rows -> ``[S, 1, H, D]``."""
    s, length = step.n_decode, step.decode_len
    return sdpa_attention_forward(
        module,
        query.transpose(0, 2),  # [S, H, 1, D]
        cache[0, :s, :, :length],  # [S, Hkv, L, D]: a view of the cache
        cache[1, :s, :, :length],
        step.decode_mask(),
        dropout=0.0,
        scaling=scaling,
        is_causal=False,
    )


AttentionInterface.register(ATTN_IMPLEMENTATION, ragged_attention)
# Outside the engine (no step given) the model behaves as with "sdpa", masks included.
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


def no_masks(config: Any) -> dict[str, None]:
    """Passed as ``attention_mask``: the model skips building masks; ragged_attention masks itself."""
    return {"full_attention": None, "sliding_attention": None}
