"""Decode steps without per-step launch overhead: CUDA graphs captured at start-up, per bucket.

A decode-only step (every scheduled token is a decode row) has a shape set by two numbers: the
rows S (highest decoding slot + 1) and the keys L (the longest row's context). We round S up to
a batch bucket (1, 2, 4, 8, then steps of 8 up to 64, then steps of 16: vLLM's and SGLang's
choice, so padding wastes little) and L up to a power-of-two bucket ending at the slot length,
and keep one graph per (S, L) pair, all captured when the engine starts, largest first, in one
shared memory pool. A step then costs one host-to-device copy of its index buffer (see
engines/text/step.py: padding rows are holes that write to the cache's scratch slot), one
replay, and sampling beside the graph (each request keeps its own generator and parameters;
sampling's shapes depend on them, so it is not captured). Steps with prompt chunks run eagerly.

Why graphs and not ``torch.compile(mode="reduce-overhead")``: the forward is transformers'
own, with our attention function reading a Python step object; capturing it as is needs no
tracing, no recompilation per shape and no guard on the step object, and start-up stays in
seconds. The same bookkeeping runs on the CPU with ``mode="eager"`` (the captured function is
called on the static buffers instead of replayed), which is how the tests cover it; and with
``mode="compile"`` the function of each bucket goes through ``torch.compile`` (measured on the
CPU; see bench/README.md).
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from pureinfer.engines.text.attention import StepBatch
from pureinfer.engines.text.kvcache import SlotKVCache
from pureinfer.engines.text.step import DecodeRow, build_step

log = logging.getLogger(__name__)

GraphMode = Literal["cuda_graph", "eager", "compile"]
DecodeForward = Callable[[torch.Tensor, torch.Tensor, StepBatch], torch.Tensor]  # -> logits [1, rows, vocab]
MIN_KEYS = 256


def batch_buckets(max_rows: int) -> list[int]:
    """1, 2, 4, 8, 16, 24, ..., 64, 80, 96, ... up to (and including) `max_rows`."""
    sizes = [1, 2, 4, 8]
    while sizes[-1] < max_rows:
        sizes.append(sizes[-1] + (8 if sizes[-1] < 64 else 16))
    return sorted({s for s in sizes if s < max_rows} | {max_rows})


def key_buckets(slot_len: int, smallest: int = MIN_KEYS) -> list[int]:
    """Powers of two from `smallest`, ending exactly at `slot_len`."""
    sizes = []
    n = smallest
    while n < slot_len:
        sizes.append(n)
        n *= 2
    return [*sizes, slot_len]


def round_up(n: int, buckets: Sequence[int]) -> int | None:
    i = bisect.bisect_left(buckets, n)
    return buckets[i] if i < len(buckets) else None


@dataclass
class _Graph:
    rows: int
    keys: int
    buffer: torch.Tensor  # device int64 [5 * rows]: ids, positions, write slots, write positions, lengths
    step: StepBatch
    run: Callable[[], torch.Tensor]
    logits: torch.Tensor | None = None  # the captured output (CUDA graphs)
    graph: torch.cuda.CUDAGraph | None = None


class DecodeGraphs:
    """One captured decode step per (rows, keys) bucket; `run` replays the one that fits."""

    def __init__(self, forward: DecodeForward, cache: SlotKVCache, *, max_rows: int, mode: GraphMode,
                 row_buckets: Sequence[int] | None = None, keys_buckets: Sequence[int] | None = None) -> None:
        if mode == "cuda_graph" and cache.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        self.forward = forward
        self.cache = cache
        self.mode: GraphMode = mode
        self.row_buckets = list(row_buckets or batch_buckets(min(max_rows, cache.slots)))
        self.key_buckets = list(keys_buckets or key_buckets(cache.slot_len))
        self._graphs: dict[tuple[int, int], _Graph] = {}
        self._pool: object | None = None
        self.replays = 0

    def capture(self) -> None:
        """Build (and on CUDA capture) every bucket, largest first: at start-up, never on a request."""
        for rows in sorted(self.row_buckets, reverse=True):
            for keys in sorted(self.key_buckets, reverse=True):
                self._graphs[(rows, keys)] = self._build(rows, keys)
        log.info("decode graphs ready", extra={"mode": self.mode, "graphs": len(self._graphs),
                                               "rows": self.row_buckets, "keys": self.key_buckets})

    def bucket(self, decode: Sequence[DecodeRow]) -> tuple[int, int] | None:
        rows = round_up(max(r.slot for r in decode) + 1, self.row_buckets)
        keys = round_up(max(r.position for r in decode) + 1, self.key_buckets)
        if rows is None or keys is None or (rows, keys) not in self._graphs:
            return None
        return rows, keys

    def run(self, decode: Sequence[DecodeRow], key: tuple[int, int], *, pin: bool = False) -> tuple[torch.Tensor, list[int]]:
        """Logits ``[K, vocab]`` of the decoding rows, and their slots in that order."""
        g = self._graphs[key]
        host, layout = build_step(decode, (), self.cache, rows=g.rows, decode_len=g.keys, pin=pin)
        self.cache.ensure_clean(g.keys)
        n = 5 * g.rows
        g.buffer.copy_(host[:n], non_blocking=True)
        keep = host[n:].to(g.buffer.device, non_blocking=True)
        if self.mode == "cuda_graph":
            assert g.graph is not None and g.logits is not None
            g.graph.replay()
            logits = g.logits
        else:
            g.step._mask = None  # eager: rebuilt from the new lengths, as the graph's kernel does
            logits = g.run()
        self.replays += 1
        return logits[0].index_select(0, keep), layout.sample_order

    def _build(self, rows: int, keys: int) -> _Graph:
        cache = self.cache
        device = cache.device
        cache.ensure_clean(keys)  # the warm-up and capture runs read the whole bucket
        buffer = torch.empty(5 * rows, dtype=torch.long, device=device)
        ids, pos, w_slot, w_pos, lengths = buffer.split(rows)
        # Until the first real step every row is a hole: it writes only the scratch slot.
        ids.fill_(0)
        pos.fill_(0)
        w_slot.fill_(cache.scratch_slot)
        w_pos.fill_(cache.scratch_pos)
        lengths.fill_(1)
        step = StepBatch(cache=cache, n_decode=rows, decode_len=keys, write_slots=w_slot, write_pos=w_pos,
                         decode_lengths=lengths, n_tokens=rows)
        input_ids, position_ids = ids[None], pos[None]

        def run() -> torch.Tensor:
            return self.forward(input_ids, position_ids, step)

        g = _Graph(rows=rows, keys=keys, buffer=buffer, step=step, run=run)
        if self.mode == "compile":
            compiled = torch.compile(run, dynamic=False, fullgraph=False)
            g.run = compiled
            compiled()
        elif self.mode == "cuda_graph":
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: kernels chosen, workspaces allocated outside the graph
                    step._mask = None
                    run()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            step._mask = None
            with torch.cuda.graph(graph, pool=self._pool):
                g.logits = run()
            self._pool = graph.pool()
            g.graph = graph
        return g
