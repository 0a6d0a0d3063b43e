"""Choosing the next token for every row of a batch, each row with its own parameters and seed.

The processing order is transformers' ``generate()`` order: repetition penalty, EOS suppression
before ``min_tokens``, then (greedy) argmax or (sampling) temperature, top-k, top-p. All of it
is batched over rows; no step depends on which other rows are in the batch:

* Every operation is row-wise (elementwise, or a reduction along the vocabulary of one row).
* The per-row parameters cross to the device as ONE ``[rows, 7]`` tensor built on the host
  (`SamplingBatch`), and what the host already knows (all greedy? any top-k, top-p, penalty?)
  decides which passes run: no value is read back before the chosen ids (one ``.tolist()``).
  The repetition penalty reads a per-slot mask of seen ids kept on the device (set from the
  prompt once, then from each sampled id, without leaving the device).
* Randomness comes from one ``torch.Generator`` per request, drawn once per sampled token: the
  token is found by inverse-CDF sampling — one uniform number per row, ``searchsorted`` in
  the row's cumulative distribution. The same seed therefore gives the same tokens alone or
  in any batch (as long as the logits are the same; see engines/text/engine.py for that side).

Top-p without sorting the vocabulary: ``torch.sort`` of a ``[16, 151936]`` batch takes ~0.3 s
on a 2-core CPU — half a decoding step of Qwen2.5-0.5B (transformers' ``TopPLogitsWarper``
pays it). The nucleus is the set of tokens with probability ≥ τ where τ is the smallest
probability still needed to reach ``top_p`` mass; we find τ exactly by a two-pass radix select
on the float bits (non-negative float32 values order like their int32 bit patterns): mass
histograms over the high, then the low 16 bits. Same set as the sort (ties at τ are all kept),
about 3x faster on CPU (small vocabularies and GPUs still sort). Written by hand because neither torch nor transformers offers a batched
sort-free nucleus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

_HI = 1 << 15  # high 16 bits of a non-negative float32 (sign bit is 0)
_LO = 1 << 16
_SORT_BELOW = 32768  # vocabulary size under which top-p sorts


@dataclass(slots=True)
class RowParams:
    """What the sampler needs to know about one row (one request) at this step."""

    temperature: float
    top_p: float
    top_k: int
    repetition_penalty: float
    suppress_eos: bool  # fewer than min_tokens generated so far
    generator: torch.Generator | None  # None for greedy rows
    seen_ids: torch.Tensor | None = None  # for `sample_rows` only: ids the repetition penalty applies to


# Columns of the per-row float parameters (one host tensor per step, copied to the device once).
_TEMP, _TOP_P, _TOP_K, _PENALTY, _SUPPRESS, _UNIFORM, _GREEDY = range(7)


@dataclass(slots=True)
class SamplingBatch:
    """One step's sampling parameters, built on the host: ``params`` is ``[rows, 7]`` float32
    (temperature, top_p, top_k, repetition penalty, suppress-EOS flag, the row's uniform draw,
    greedy flag),
    and the flags below are what the host already knows, so the device work needs no look back."""

    params: torch.Tensor
    all_greedy: bool
    any_greedy: bool
    any_penalty: bool
    any_suppress: bool
    k_max: int  # the largest top-k among sampled rows (0: no top-k)
    any_top_p: bool

    @classmethod
    def build(cls, rows: Sequence[RowParams], *, pin: bool = False) -> SamplingBatch:
        """One uniform per sampled row from its own generator (on the CPU: the same seed draws
        the same number on every device)."""
        values = []
        for r in rows:
            greedy = r.generator is None
            u = 0.0 if greedy else float(torch.rand(1, generator=r.generator))
            values.append((1.0 if greedy else r.temperature, r.top_p, float(r.top_k),
                           r.repetition_penalty, 1.0 if r.suppress_eos else 0.0, u, 1.0 if greedy else 0.0))
        params = torch.tensor(values, dtype=torch.float32).reshape(len(rows), 7)
        if pin:
            params = params.pin_memory()
        sampled = [r for r in rows if r.generator is not None]
        return cls(
            params=params,
            all_greedy=not sampled,
            any_greedy=len(sampled) < len(rows),
            any_penalty=any(r.repetition_penalty != 1.0 for r in rows),
            any_suppress=any(r.suppress_eos for r in rows),
            k_max=max((r.top_k for r in sampled), default=0),
            any_top_p=any(r.top_p < 1.0 for r in sampled),
        )


def sample(logits: torch.Tensor, batch: SamplingBatch, eos_ids: torch.Tensor, *,
           seen: torch.Tensor | None = None, n_valid: int | None = None) -> torch.Tensor:
    """``logits``: ``[rows, vocab]``; returns the chosen ids as a device tensor ``[rows]``.

    ``seen``: ``[rows, vocab]`` bool, the ids each row's repetition penalty applies to.
    ``n_valid``: ids from here on are never chosen (rows of the output layer past the tokenizer)."""
    params = batch.params.to(logits.device, non_blocking=True)
    logits = logits.float()  # in place from here on: the logits are this step's own tensor
    if n_valid is not None and n_valid < logits.shape[-1]:
        logits[:, n_valid:] = float("-inf")

    # 1. Repetition penalty (transformers' semantics: divide positive logits, multiply negative).
    if batch.any_penalty and seen is not None:
        penalty = params[:, _PENALTY, None]
        scaled = torch.where(logits < 0, logits * penalty, logits / penalty)
        logits = torch.where(seen, scaled, logits)

    # 2. No EOS before min_tokens.
    if batch.any_suppress and eos_ids.numel():
        eos = logits[:, eos_ids]
        logits[:, eos_ids] = eos.masked_fill(params[:, _SUPPRESS, None] > 0, float("-inf"))

    if batch.all_greedy:
        return logits.argmax(dim=-1)
    greedy = logits.argmax(dim=-1) if batch.any_greedy else None
    chosen = _sample(logits, params, batch)
    if greedy is not None:
        chosen = torch.where(params[:, _GREEDY] > 0, greedy, chosen)
    return chosen


def sample_rows(logits: torch.Tensor, rows: Sequence[RowParams], eos_ids: torch.Tensor,
                n_valid: int | None = None) -> list[int]:
    """`sample` for rows described one by one (the penalty from each row's ``seen_ids``)."""
    seen = None
    if any(r.repetition_penalty != 1.0 and r.seen_ids is not None for r in rows):
        seen = torch.zeros(logits.shape, dtype=torch.bool, device=logits.device)
        for i, r in enumerate(rows):
            if r.seen_ids is not None:
                seen[i, r.seen_ids.to(logits.device)] = True
    return sample(logits, SamplingBatch.build(rows), eos_ids.to(logits.device), seen=seen,
                  n_valid=n_valid).tolist()


def _sample(logits: torch.Tensor, params: torch.Tensor, batch: SamplingBatch) -> torch.Tensor:
    """Sampling rows (greedy rows go along and are replaced by the caller); in place on `logits`."""
    # 3. Temperature (greedy rows carry 1.0).
    logits.div_(params[:, _TEMP, None])
    # 4. Top-k: everything below the k-th largest logit of the row goes (ties stay, as in transformers).
    k_max = min(batch.k_max, logits.shape[-1])
    if k_max > 0:
        top_vals = logits.topk(k_max, dim=-1).values
        ks = params[:, _TOP_K].long()
        kth = torch.where(ks > 0, ks.clamp(max=k_max) - 1, k_max - 1)
        thresholds = top_vals.gather(1, kth[:, None])
        logits.masked_fill_((ks[:, None] > 0) & (logits < thresholds), float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    # 5. Top-p.
    if batch.any_top_p:
        p = params[:, _TOP_P]
        tau = nucleus_threshold(probs, p)
        tau = torch.where(p >= 1.0, torch.zeros_like(tau), tau)
        probs.masked_fill_(probs < tau[:, None], 0.0)
    # 6. Inverse-CDF sampling, one uniform per row from the row's own generator.
    cdf = probs.cumsum_(dim=-1)
    target = params[:, _UNIFORM] * cdf[:, -1]
    return torch.searchsorted(cdf, target[:, None], right=True).clamp_(max=cdf.shape[-1] - 1)[:, 0]


def nucleus_threshold(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Per row, the smallest probability τ such that tokens with ``p >= τ`` hold ≥ top_p mass
    while tokens with ``p > τ`` hold less: exactly the nucleus a descending sort would keep."""
    probs = probs.contiguous()
    n, vocab = probs.shape
    # Small vocabularies: a sort is cheaper than two 64k-bucket histograms. GPUs sort fast, and
    # their scatter_add (atomics) would make the threshold, and so seeded output, run-dependent.
    if vocab <= _SORT_BELOW or probs.device.type != "cpu":
        sorted_p = probs.sort(dim=-1, descending=True).values
        before = sorted_p.cumsum(dim=-1) - sorted_p  # mass of the tokens ranked above each token
        k = (before < top_p[:, None]).sum(dim=-1).clamp_(min=1)
        return sorted_p.gather(1, (k - 1)[:, None])[:, 0]
    bits = probs.view(torch.int32)
    zeros = torch.zeros(n, device=probs.device)
    # Pass 1: mass per bucket of the high 16 bits; walk down from the top until top_p is reached.
    hi = (bits >> 16).long()
    mass = torch.zeros(n, _HI, device=probs.device).scatter_add_(1, hi, probs)
    from_top = mass.flip(1).cumsum(1)
    j = (from_top < top_p[:, None]).sum(1).clamp_(max=_HI - 1)
    b_hi = (_HI - 1) - j
    above = torch.where(j > 0, from_top.gather(1, (j - 1).clamp(min=0)[:, None])[:, 0], zeros)
    # Pass 2: inside that bucket, the same on the low 16 bits.
    in_bucket = hi == b_hi[:, None]
    lo = (bits & 0xFFFF).long()
    mass = torch.zeros(n, _LO, device=probs.device).scatter_add_(1, lo, probs * in_bucket)
    from_top = mass.flip(1).cumsum(1) + above[:, None]
    j = (from_top < top_p[:, None]).sum(1).clamp_(max=_LO - 1)
    b_lo = (_LO - 1) - j
    return ((b_hi << 16) | b_lo).to(torch.int32).view(torch.float32)
