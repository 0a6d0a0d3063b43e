"""Ragged attention over per-request KV caches: how several requests share one forward pass.

A decoding step packs the new tokens of every scheduled request into ONE row (``[1, T]``):
decode tokens (one per running request) and prefill chunks (many per new request) side by side,
each with its own ``position_ids``. Every linear layer, norm and MLP of the model then runs once
over all T tokens — that is where batching pays. Attention is the only part that has to know
where one request ends and the next begins, so we register an attention function with
transformers' ``AttentionInterface`` that, per request segment,

1. writes the segment's new keys/values into that request's own cache at its positions, and
2. runs transformers' own ``sdpa_attention_forward`` of the segment's queries against that
   request's cache up to its end — with exactly the shapes a batch-1 ``generate()`` uses
   (``is_causal`` for a fresh prefill, no mask for a decode token, an offset causal mask for
   a later prefill chunk).

Why not a padded ``[B, L]`` batch with a 4-D mask: padding wastes compute on every prompt length
mismatch and needs a KV copy when a request joins or leaves; here requests join and leave with
no copy at all. Why a per-request cache instead of one big slot tensor: the capacity of a
request is known at admission (prompt + max_tokens), so the cache is allocated once, exactly,
and freed with the request; nothing is ever re-copied. The per-segment loop costs one small
SDPA call per request and layer, a few percent of a step at batch 16 on CPU (measured; see
bench/README.md).

Model support: any transformers causal LM whose attention modules call
``ALL_ATTENTION_FUNCTIONS`` with post-RoPE ``(query, key, value)`` and expose ``layer_idx``
(Qwen2/2.5/3, Llama, ...). Sliding-window layers are not supported (the engine refuses such
models rather than attend past the window). The model's own mask construction is skipped by passing
``attention_mask={"full_attention": None, "sliding_attention": None}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTN_IMPLEMENTATION = "pureinfer_ragged"
STEP_KWARG = "pureinfer_step"


@dataclass(slots=True)
class Segment:
    """One request's tokens in a step: ``length`` tokens at positions ``start..start+length-1``,
    found at ``offset..offset+length-1`` of the packed token axis."""

    kv: torch.Tensor  # [n_layers, capacity, 2, n_kv_heads, head_dim], owned by the request
    start: int
    length: int
    offset: int
    mask: torch.Tensor | None = None  # offset-causal mask for a prefill chunk after position 0


@dataclass(slots=True)
class StepBatch:
    """The segments of one step. The leading run of single-token segments (the scheduler puts
    decode tokens first) sits at offsets 0..n_decode-1; their attention runs as one padded batch."""

    segments: list[Segment] = field(default_factory=list)
    n_tokens: int = 0
    n_decode: int = 0
    _decode_mask: torch.Tensor | None = None

    def add(self, kv: torch.Tensor, start: int, length: int) -> Segment:
        mask = None
        if length == 1 and self.n_decode == len(self.segments):
            self.n_decode += 1  # part of the leading run of single tokens: batched attention
        elif length > 1 and start > 0:
            # Query i (absolute position start+i) sees keys 0..start+i.
            q = torch.arange(start, start + length, device=kv.device)[:, None]
            k = torch.arange(start + length, device=kv.device)[None, :]
            mask = (k <= q)[None, None]
        seg = Segment(kv=kv, start=start, length=length, offset=self.n_tokens, mask=mask)
        self.segments.append(seg)
        self.n_tokens += length
        return seg

    def decode_mask(self, device: torch.device) -> torch.Tensor:
        """[n_decode, 1, 1, longest] True where a decode row has a key (built once per step)."""
        if self._decode_mask is None:
            lengths = torch.tensor([s.start + 1 for s in self.segments[: self.n_decode]], device=device)
            keys = torch.arange(int(lengths.max()), device=device)
            self._decode_mask = (keys[None, :] < lengths[:, None])[:, None, None, :]
        return self._decode_mask


def new_kv_cache(config: Any, capacity: int, *, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """The cache of one request: room for exactly ``capacity`` positions in every layer."""
    n_layers = config.num_hidden_layers
    n_kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    # Position-major: a request's first L positions of a layer are one slice (writes and the
    # padded decode batch take one op per request).
    return torch.empty(n_layers, capacity, 2, n_kv, head_dim, dtype=dtype, device=device)


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
    layer = cast(int, module.layer_idx)
    n_heads, head_dim = query.shape[1], query.shape[3]
    out = query.new_empty(1, step.n_tokens, n_heads, head_dim)
    # 1. Every segment's new keys/values go into its request's cache (one copy per segment).
    new_kv = torch.stack((key[0], value[0])).permute(2, 0, 1, 3)  # [T, 2, Hkv, D]
    for seg in step.segments:
        seg.kv[layer, seg.start : seg.start + seg.length] = new_kv[seg.offset : seg.offset + seg.length]
    # 2. Decode tokens of several requests: one padded SDPA call (one kernel / one parallel
    #    region instead of one per request; padded keys are masked out).
    first = 0
    if step.n_decode > 1:
        n = step.n_decode
        padded = pad_sequence([s.kv[layer, : s.start + 1] for s in step.segments[:n]], batch_first=True)
        o, _ = sdpa_attention_forward(
            module,
            query[0, :, :n].transpose(0, 1).unsqueeze(2),  # [n, H, 1, D]
            padded[:, :, 0].transpose(1, 2),  # [n, Hkv, L, D]
            padded[:, :, 1].transpose(1, 2),
            step.decode_mask(query.device),
            dropout=0.0,
            scaling=scaling,
            is_causal=False,
        )
        out[0, :n] = o[:, 0]
        first = n
    # 3. Prefill chunks (and a lone decode token): exactly the shapes of a batch-1 generate().
    for seg in step.segments[first:]:
        lo, hi = seg.offset, seg.offset + seg.length
        cached = seg.kv[layer, : seg.start + seg.length].transpose(0, 2)  # [Hkv, 2, L, D]
        o, _ = sdpa_attention_forward(
            module,
            query[:, :, lo:hi],
            cached[:, 0].unsqueeze(0),
            cached[:, 1].unsqueeze(0),
            seg.mask,
            dropout=0.0,
            scaling=scaling,
            is_causal=seg.start == 0,
        )
        out[:, lo:hi] = o
    return out, None


AttentionInterface.register(ATTN_IMPLEMENTATION, ragged_attention)
# Outside the engine (no step given) the model behaves as with "sdpa", masks included.
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, sdpa_mask)


def no_masks(config: Any) -> dict[str, None]:
    """Passed as ``attention_mask``: the model skips building masks; ragged_attention masks itself."""
    return {"full_attention": None, "sliding_attention": None}
