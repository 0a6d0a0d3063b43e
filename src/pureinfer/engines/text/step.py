"""A step's model inputs, built on the host and copied to the device once.

The scheduler says which requests run and how many tokens each feeds; this module turns that
into tensors: the packed token ids and positions, the cache coordinates of every token, the
decode rows' lengths and the rows whose logits are kept. Every number is known on the host, so
all of it goes into ONE int64 buffer (pinned on CUDA) and crosses to the device in one
``non_blocking`` copy; nothing in the forward pass reads a device value back (the old step
made a tensor per list, and the attention read ``int(lengths.max())`` back in its first layer).

Rows ``0..S-1`` are the decode rows of slots ``0..S-1`` (S = the highest decoding slot + 1, or a
larger bucket for a captured graph); a slot in that range with no decoding request is a hole:
token 0 at position 0, written to the scratch slot, never sampled. Prefill chunks follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from pureinfer.engines.text.attention import Prefill, StepBatch, chunk_mask
from pureinfer.engines.text.kvcache import SlotKVCache


@dataclass(frozen=True, slots=True)
class DecodeRow:
    slot: int
    token: int
    position: int  # where the token goes; it attends to keys 0..position


@dataclass(frozen=True, slots=True)
class PrefillChunk:
    slot: int
    tokens: Sequence[int]
    start: int
    sample: bool  # the chunk ends the prompt: its last token's logits are kept


@dataclass(slots=True)
class StepInputs:
    input_ids: torch.Tensor  # [1, T]
    position_ids: torch.Tensor  # [1, T]
    logits_index: torch.Tensor  # [K]: packed rows whose logits are sampled, in `sample_order`
    batch: StepBatch
    sample_order: list[int]  # for each kept row: its index in the decode rows (< S) or S + chunk index


def build_step(decode: Sequence[DecodeRow], prefill: Sequence[PrefillChunk], cache: SlotKVCache, *,
               rows: int | None = None, decode_len: int | None = None,
               pin: bool = False) -> tuple[torch.Tensor, StepInputs]:
    """The host buffer (copy it to the device, then call `StepInputs.on`) and the layout.

    ``rows``/``decode_len`` pad the decode part to a fixed shape (a graph bucket): at least the
    highest decoding slot + 1 rows, at least the longest decode row's keys."""
    by_slot = {row.slot: row for row in decode}
    n_rows = max(by_slot, default=-1) + 1
    if rows is not None:
        if rows < n_rows:
            raise ValueError(f"{rows} rows cannot hold slot {n_rows - 1}")
        n_rows = rows
    ids: list[int] = []
    pos: list[int] = []
    w_slot: list[int] = []
    w_pos: list[int] = []
    lengths: list[int] = []
    keep: list[int] = []
    order: list[int] = []
    for r in range(n_rows):
        row = by_slot.get(r)
        if row is None:  # a hole: computed for nobody, written to scratch
            ids.append(0)
            pos.append(0)
            w_slot.append(cache.scratch_slot)
            w_pos.append(cache.scratch_pos)
            lengths.append(1)
            continue
        ids.append(row.token)
        pos.append(row.position)
        w_slot.append(r)
        w_pos.append(row.position)
        lengths.append(row.position + 1)
        keep.append(r)
        order.append(r)
    longest = max(lengths, default=0)
    if decode_len is not None:
        if decode_len < longest:
            raise ValueError(f"decode_len {decode_len} < the longest row's {longest} keys")
        longest = decode_len
    uniform = all(n == longest for n in lengths)
    prefills: list[Prefill] = []
    offset = n_rows
    for i, chunk in enumerate(prefill):
        n = len(chunk.tokens)
        ids.extend(chunk.tokens)
        positions = range(chunk.start, chunk.start + n)
        pos.extend(positions)
        w_slot.extend([chunk.slot] * n)
        w_pos.extend(positions)
        prefills.append(Prefill(slot=chunk.slot, start=chunk.start, length=n, offset=offset))
        if chunk.sample:
            keep.append(offset + n - 1)
            order.append(n_rows + i)
        offset += n
    host = torch.tensor([*ids, *pos, *w_slot, *w_pos, *lengths, *keep], dtype=torch.long)
    if pin:
        host = host.pin_memory()
    layout = StepInputs(
        input_ids=host, position_ids=host, logits_index=host, sample_order=order,
        batch=StepBatch(cache=cache, n_decode=n_rows, decode_len=longest, write_slots=host, write_pos=host,
                        decode_lengths=None if uniform else host, prefills=prefills, n_tokens=offset),
    )
    return host, layout


def place(layout: StepInputs, buffer: torch.Tensor) -> StepInputs:
    """Point the layout's tensors at their parts of `buffer` (the host buffer, on the device)."""
    t = layout.batch.n_tokens
    s = layout.batch.n_decode
    k = len(layout.sample_order)
    parts = buffer.split([t, t, t, t, s, k])
    layout.input_ids = parts[0][None]
    layout.position_ids = parts[1][None]
    layout.batch.write_slots = parts[2]
    layout.batch.write_pos = parts[3]
    if layout.batch.decode_lengths is not None:
        layout.batch.decode_lengths = parts[4]
    layout.logits_index = parts[5]
    device = buffer.device
    for seg in layout.batch.prefills:
        seg.mask = chunk_mask(seg.start, seg.length, device)
    return layout
