"""The pure parts of the text engine: the scheduler's policy and the sampler's math."""

from __future__ import annotations

import pytest
import torch

from pureinfer.engines.base import TextRequest
from pureinfer.engines.text import sampling as text_sampling
from pureinfer.engines.text.sampling import RowParams, nucleus_threshold, sample_rows
from pureinfer.engines.text.scheduler import Scheduler, Sequence
from tests.support.engine import sampling


def seq(n_prompt: int, deadline: float | None = None) -> Sequence:
    req = TextRequest("r", [1] * n_prompt, sampling(max_tokens=8), deadline)
    return Sequence(request=req, tokens=[1] * n_prompt, n_prompt=n_prompt, channel=None)


def test_scheduler_admits_fifo_and_chunks_prompts_within_the_budget() -> None:
    s = Scheduler(max_running=2, max_waiting=2, max_step_tokens=10)
    a, b, c = seq(4), seq(15), seq(3)
    for x in (a, b, c):
        s.add(x)
    plan = s.schedule()
    assert [(x, n) for x, n in plan.work] == [(a, 4), (b, 6)]  # c waits: only two may run
    assert (s.num_running, s.num_waiting) == (2, 1)
    a.n_cached, b.n_cached = 4, 6
    a.tokens.append(9)
    plan = s.schedule()
    assert [(x, n) for x, n in plan.work] == [(a, 1), (b, 9)]  # decode first, then the next chunk
    s.finish(a)
    plan = s.schedule()
    assert [x for x, _ in plan.work] == [b, c]  # c joined as soon as a left


def test_scheduler_asserts_its_limits_and_applies_aborts_and_deadlines() -> None:
    s = Scheduler(max_running=1, max_waiting=1, max_step_tokens=10)
    a, b = seq(2), seq(2, deadline=0.0)
    s.add(a)
    s.add(b)
    # The admission gate never lets a third one in: one that comes anyway is a bug, not an overload.
    with pytest.raises(AssertionError, match="admission let in more"):
        s.add(seq(2))
    s.abort(a)
    plan = s.schedule(now=1.0)
    assert plan.work == [] and plan.expired == [b]
    assert (s.num_running, s.num_waiting) == (0, 0) and not s.has_work()


def rows(n: int, **kw: object) -> list[RowParams]:
    base = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "repetition_penalty": 1.0, "suppress_eos": False}
    base.update(kw)
    return [RowParams(**base, generator=torch.Generator().manual_seed(i)) for i in range(n)]  # type: ignore[arg-type]


@pytest.mark.parametrize("vocab", [1000, 50_000])
def test_nucleus_threshold_keeps_what_a_sort_keeps(vocab: int, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(6, vocab) * 3, dim=-1)
    top_p = torch.tensor([0.1, 0.5, 0.9, 0.95, 0.999, 1e-6])
    sorted_p = probs.sort(dim=-1, descending=True).values
    expected = ((sorted_p.cumsum(-1) - sorted_p) < top_p[:, None]).sum(-1)
    for sort_below in (0, 10**9):  # the radix select and the sort give the same threshold
        monkeypatch.setattr(text_sampling, "_SORT_BELOW", sort_below)
        tau = nucleus_threshold(probs, top_p)
        assert torch.equal((probs >= tau[:, None]).sum(-1), expected)


def test_each_row_samples_the_same_alone_or_batched() -> None:
    torch.manual_seed(1)
    logits = torch.randn(5, 3000) * 2
    params = {"temperature": 0.8, "top_p": 0.9, "top_k": 40}
    batched = sample_rows(logits.clone(), rows(5, **params), torch.tensor([0]))
    alone = [sample_rows(logits[i : i + 1].clone(), [rows(5, **params)[i]], torch.tensor([0]))[0] for i in range(5)]
    assert batched == alone


def test_top_k_and_eos_suppression_and_repetition_penalty() -> None:
    logits = -20.0 - torch.arange(10.0)[None]  # distinct values: top-k keeps ties, like transformers'
    logits[0, 3], logits[0, 7] = 5.0, 4.9
    picks = {sample_rows(logits.clone(), [r], torch.tensor([3]))[0] for r in rows(30, top_k=2)}
    assert picks == {3, 7}
    picks = {sample_rows(logits.clone(), [r], torch.tensor([3]))[0] for r in rows(30, top_k=2, suppress_eos=True)}
    assert picks == {7}
    greedy = RowParams(0.0, 1.0, 0, 2.0, False, None, seen_ids=torch.tensor([3]))
    assert sample_rows(logits.clone(), [greedy], torch.tensor([0])) == [7]


def test_engine_linears_switch_only_inside_the_engine_context() -> None:
    from pureinfer.engines.text import linear as text_linear

    torch.manual_seed(2)
    layer = torch.nn.Linear(48, 40)
    x = torch.randn(1, 16, 48)
    stock = torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert text_linear.install(torch.nn.Sequential(layer)) == 1
    calls: list[str] = []
    real_mm = torch.addmm
    try:
        torch.addmm = lambda *a, **k: calls.append("addmm") or real_mm(*a, **k)  # type: ignore[assignment]
        assert torch.equal(layer(x), stock) and calls == []  # outside: F.linear, untouched
        with text_linear.engine_linears():
            inside = layer(x)
            single = layer(x[:, :1])  # one row: the stock path, as batch-1 generate() has it
    finally:
        torch.addmm = real_mm  # type: ignore[assignment]
    assert calls == ["addmm"]
    assert inside.shape == stock.shape and inside.is_contiguous()
    torch.testing.assert_close(inside, stock)
    assert torch.equal(single, torch.nn.functional.linear(x[:, :1], layer.weight, layer.bias))
