"""`bench text`'s runners: each one drives a workload and returns the figures of `summarize`.

Only torch, transformers and tokenizers are imported here (and numpy, torch's own dependency):
this is the engine-only path that runs on a bare GPU machine. The HTTP runners are in
`text_http` (they need the web stack).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(slots=True)
class Timing:
    """One request: times relative to the run's start (seconds)."""

    submitted: float
    first_token: float | None = None
    finished: float | None = None
    n_tokens: int = 0
    token_times: list[float] = field(default_factory=list)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(values, q)), 4)


def summarize(timings: list[Timing], wall: float) -> dict[str, Any]:
    done = [t for t in timings if t.finished is not None]
    ttft = [t.first_token - t.submitted for t in done if t.first_token is not None]
    e2e = [t.finished - t.submitted for t in done]  # type: ignore[operator]
    itl = [(t.finished - t.first_token) / (t.n_tokens - 1)  # type: ignore[operator]
           for t in done if t.first_token is not None and t.n_tokens > 1]
    tokens = sum(t.n_tokens for t in done)
    return {
        "load_avg_1m": round(os.getloadavg()[0], 2),  # other work on the machine skews everything
        "requests": len(done),
        "output_tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 3) if wall > 0 else None,
        "ttft_p50_s": _pct(ttft, 50),
        "ttft_p95_s": _pct(ttft, 95),
        "itl_p50_s": _pct(itl, 50),
        "e2e_p50_s": _pct(e2e, 50),
        "e2e_p95_s": _pct(e2e, 95),
    }


async def run_engine(engine: Any, prompt_ids: list[int], *, concurrency: int, rounds: int,
                     params: Any) -> dict[str, Any]:
    from pureinfer.engines.base import TextRequest

    timings: list[Timing] = []
    start = time.perf_counter()

    async def client(i: int) -> None:
        for r in range(rounds):
            t = Timing(time.perf_counter() - start)
            timings.append(t)
            async for delta in engine.generate(TextRequest(f"bench-{i}-{r}", prompt_ids, params)):
                now = time.perf_counter() - start
                if delta.token_ids and t.first_token is None:
                    t.first_token = now
                t.n_tokens += len(delta.token_ids)
            t.finished = time.perf_counter() - start

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return summarize(timings, time.perf_counter() - start)


def run_naive(model: Any, prompt_ids: list[int], *, n_requests: int, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The seed worker's way: one `model.generate()` at a time (a streamer records token times)."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):
        def __init__(self, timing: Timing, start: float) -> None:
            self.timing, self.start, self.prompt_seen = timing, start, False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate() first hands over the prompt
                self.prompt_seen = True
                return
            now = time.perf_counter() - self.start
            if self.timing.first_token is None:
                self.timing.first_token = now
            self.timing.n_tokens += int(value.numel())

        def end(self) -> None:
            pass

    timings: list[Timing] = []
    start = time.perf_counter()
    ids = torch.tensor([prompt_ids], device=model.device)
    with torch.inference_mode():
        for _ in range(n_requests):
            t = Timing(time.perf_counter() - start)
            timings.append(t)
            model.generate(ids, attention_mask=torch.ones_like(ids), streamer=Clock(t, start), **gen_kwargs)
            t.finished = time.perf_counter() - start
    return summarize(timings, time.perf_counter() - start)


def run_static_batch(model: Any, prompt_ids: list[int], *, batch: int, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
    """One `model.generate()` over `batch` prompts: the throughput a perfect static batch gets."""
    import torch

    ids = torch.tensor([prompt_ids] * batch, device=model.device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), **gen_kwargs)
    wall = time.perf_counter() - start
    n_new = out.shape[1] - ids.shape[1]
    timings = [Timing(0.0, None, wall, n_new) for _ in range(batch)]
    return {**summarize(timings, wall), "batch": batch}


def run_cbm(model: Any, prompt_ids: list[int], *, n_requests: int, gen_kwargs: dict[str, Any]) -> dict[str, Any]:
    """transformers' own continuous batching (`generate_batch`), for the design note."""
    import torch
    from transformers import GenerationConfig

    cfg = GenerationConfig(**{k: v for k, v in gen_kwargs.items() if k != "min_new_tokens"},
                           eos_token_id=-1,  # no EOS: fixed-length outputs, like min_tokens elsewhere
                           pad_token_id=model.generation_config.pad_token_id or 0)
    previous = model.config._attn_implementation
    model.set_attn_implementation("sdpa")
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            outputs = model.generate_batch(inputs=[list(prompt_ids)] * n_requests, generation_config=cfg,
                                           progress_bar=False)
        wall = time.perf_counter() - start
    finally:
        model.set_attn_implementation(previous)
    timings = [Timing(0.0, None, wall, len(o.generated_tokens)) for o in outputs.values()]
    return summarize(timings, wall)


def make_prompt(tokenizer: Any, n_tokens: int) -> str:
    """A text that encodes to exactly `n_tokens` tokens (deterministic)."""
    from pureinfer.engines.demo.text import _corpus

    words = " ".join(_corpus(400, seed=1)).split()
    text = ""
    for word in words:
        candidate = f"{text} {word}" if text else word
        if len(tokenizer.encode(candidate, add_special_tokens=False)) > n_tokens:
            break
        text = candidate
    # Pad with single characters until the count is exact.
    while len(tokenizer.encode(text, add_special_tokens=False)) < n_tokens:
        text += " a"
    return text


def demo_model_dir(shape: str, cache_dir: str | None) -> Path:
    from pureinfer.engines.demo.text import build_text_model, demo_text_ready
    from pureinfer.paths import default_cache_dir

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    out = root / "bench-models" / shape / "text"
    if not demo_text_ready(out):
        build_text_model(out, shape)
    return out




def weight_bytes(model: Any) -> int:
    """Bytes a decode step must read: every parameter once (a tied embedding counts once; an
    untied input embedding is not read, only its rows for the step's tokens)."""
    params = {p.data_ptr(): p for p in model.parameters()}
    embed = model.get_input_embeddings().weight
    tied = model.get_output_embeddings() is not None and model.get_output_embeddings().weight.data_ptr() == embed.data_ptr()
    total = sum(p.numel() * p.element_size() for p in params.values())
    return total if tied else total - embed.numel() * embed.element_size()


def copy_bandwidth(device: str, *, gib: float = 2.0, repeats: int = 10) -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read plus bytes written (the
    ceiling a memory-bound decode step is measured against), median of `repeats` copies."""
    import torch

    n = int(gib * 2**30) // 4
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    times = []
    for _ in range(repeats + 2):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        dst.copy_(src)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times = sorted(times[2:])
    return 2 * n * 4 / times[len(times) // 2]
