"""`pureinfer bench text`: continuous-batching throughput and latency against naive baselines, in one run.

For each concurrency level C, C clients each send ``--rounds`` requests back to back (a new one
as soon as the previous finished), all with the same prompt length and a fixed output length
(``min_tokens = max_tokens``, so every run does the same work):

- ``engine``: the text engine called directly (`TextEngine.generate`);
- ``http``: the worker app (`pureinfer.worker.app.create_app`, the same engine injected) served
  by uvicorn on 127.0.0.1 and called with httpx, ``POST /generate`` with ``stream: true``.

Baselines, measured in the same process on the same weights:

- ``naive``: one request at a time with ``model.generate()`` — how the seed's worker served;
- ``static_batch``: one ``model.generate()`` call over a padded batch of 16 prompts.

Per run: aggregate output tokens/s, TTFT p50/p95, inter-token latency p50 (per request:
(last token - first token) / (tokens - 1)), end-to-end p50/p95. ``targets`` compares
concurrency 16 with the baselines (the serving-engine issue's targets) as booleans.

With ``--device cuda`` it also measures the fast-path figures (``decode_b1``: one request's
decode tokens/s x the weights' bytes against the device-to-device copy bandwidth measured in
the same run; ``--anchor FILE`` reads gpu_anchor.py's JSON of the same run for the continuous-
batching ratio) and ``gpu_targets``. ``--in-memory`` builds the demo shape's random weights
directly on the device (no 15 GB written to disk for the 7B shape).

Modules: this one (CLI and the run), `text_runners` (engine, naive, static batch, CBM; imports
only torch/transformers/tokenizers), `text_http` (the worker app and the HTTP load generator:
imported only when the HTTP path runs), `text_report` (targets).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from pureinfer.bench.text_report import STATIC_BATCH, evaluate_gpu_targets, evaluate_targets
from pureinfer.bench.text_runners import (
    copy_bandwidth,
    demo_model_dir,
    make_prompt,
    run_cbm,
    run_engine,
    run_naive,
    run_static_batch,
    weight_bytes,
)

DEFAULT_CONCURRENCY = "1,4,16,64"


def add_parser(sub: Any, name: str = "text") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="continuous batching vs naive generate(): text throughput and latency")
    p.add_argument("--model", help="model folder or hub id (default: build the random-weight demo of --shape)")
    p.add_argument("--shape", default="qwen2.5-0.5b", choices=["tiny", "qwen2.5-0.5b", "qwen2.5-7b"],
                   help="demo architecture when no --model (default: qwen2.5-0.5b)")
    p.add_argument("--in-memory", action="store_true",
                   help="build the demo shape's random weights on the device instead of on disk")
    p.add_argument("--concurrency", default=DEFAULT_CONCURRENCY, help="concurrent clients, comma-separated: one run each")
    p.add_argument("--rounds", type=int, default=1, help="requests each client sends back to back")
    p.add_argument("--prompt-tokens", type=int, default=16, help="prompt length in tokens")
    p.add_argument("--max-tokens", type=int, default=32, help="output length in tokens")
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy")
    p.add_argument("--naive-requests", type=int, default=3, help="requests for the naive baseline")
    p.add_argument("--paths", default="engine,http", help="which paths to run, comma-separated: engine (in process), http (through the worker app)")
    p.add_argument("--no-baselines", action="store_true", help="skip the naive and static-batch baselines")
    p.add_argument("--with-cbm", action="store_true",
                   help="also time transformers' ContinuousBatchingManager (generate_batch) on 16 requests")
    p.add_argument("--max-running", type=int, default=16, help="engine batch size")
    p.add_argument("--decode-tokens", type=int, default=0,
                   help="also time one request decoding this many tokens against the copy bandwidth (0: off)")
    p.add_argument("--anchor", help="gpu_anchor.py's JSON of the same run (for the continuous-batching ratio)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    p.add_argument("--cache-dir", default=None, help="where demo models are built (default: ~/.cache/pureinfer)")
    p.add_argument("--out", help="also write the JSON to this file (default: standard output only)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    result = asyncio.run(run_text_bench(
        model=args.model, shape=args.shape, in_memory=args.in_memory,
        concurrency=[int(c) for c in args.concurrency.split(",") if c],
        rounds=args.rounds, prompt_tokens=args.prompt_tokens, max_tokens=args.max_tokens,
        temperature=args.temperature, naive_requests=args.naive_requests,
        paths=[p for p in args.paths.split(",") if p], baselines=not args.no_baselines, with_cbm=args.with_cbm,
        max_running=args.max_running, decode_tokens=args.decode_tokens,
        anchor=json.loads(Path(args.anchor).read_text()) if args.anchor and Path(args.anchor).exists() else None,
        threads=args.threads, device=args.device, dtype=args.dtype, cache_dir=args.cache_dir, progress=True,
    ))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


def load_engine(*, model: str | None, shape: str, in_memory: bool, device: str, dtype: str, max_running: int,
                max_waiting: int, cache_dir: str | None) -> tuple[Any, str]:
    """The engine under test, on a model folder or the demo shape (on disk, or built on the device)."""
    from pureinfer.engines.text.engine import HFTextEngine, load_text_engine

    if model is None and in_memory:
        from pureinfer.engines.demo.text import build_text_model_in_memory
        from pureinfer.engines.device import pick_dtype

        lm, tokenizer = build_text_model_in_memory(shape, device=device, dtype=pick_dtype(dtype, device))
        kv_budget = None
        if device.startswith("cuda"):
            import torch

            from pureinfer.engines.text.kvcache import cuda_kv_budget

            kv_budget = cuda_kv_budget(torch.device(device), fraction=0.9)
        return HFTextEngine(lm, tokenizer, model_id=f"random-{shape}", max_running=max_running,
                            max_waiting=max_waiting, kv_budget=kv_budget), f"random-{shape} (in memory)"
    model_dir = model or str(demo_model_dir(shape, cache_dir))
    return load_text_engine(model_dir, device=device, dtype=dtype, max_running=max_running,
                            max_waiting=max_waiting), model_dir


async def run_text_bench(
    *,
    model: str | None = None,
    shape: str = "qwen2.5-0.5b",
    in_memory: bool = False,
    concurrency: list[int] | None = None,
    rounds: int = 1,
    prompt_tokens: int = 16,
    max_tokens: int = 32,
    temperature: float = 0.7,
    naive_requests: int = 3,
    paths: list[str] | None = None,
    baselines: bool = True,
    with_cbm: bool = False,
    max_running: int = 16,
    decode_tokens: int = 0,
    anchor: dict[str, Any] | None = None,
    threads: int | None = None,
    device: str | None = None,
    dtype: str = "auto",
    cache_dir: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    import os

    import torch

    from pureinfer.engines.base import SamplingParams
    from pureinfer.engines.device import pick_device

    def say(msg: str) -> None:
        if progress:
            print(f"[bench text {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    if threads:
        torch.set_num_threads(threads)
    concurrency = concurrency or [int(c) for c in DEFAULT_CONCURRENCY.split(",")]
    paths = paths or ["engine", "http"]
    device = pick_device(device)
    max_waiting = max(64, max(concurrency))
    say(f"loading {model or shape} on {device}")
    t0 = time.perf_counter()
    engine, model_name = load_engine(model=model, shape=shape, in_memory=in_memory, device=device, dtype=dtype,
                                     max_running=max_running, max_waiting=max_waiting, cache_dir=cache_dir)
    await engine.start()  # plans the KV cache; on CUDA captures the decode graphs
    start_s = round(time.perf_counter() - t0, 2)
    prompt = make_prompt(engine.tokenizer, prompt_tokens)
    prompt_ids = engine.encode(prompt)
    top_p = 0.9 if temperature > 0 else 1.0
    sampling: dict[str, Any] = {"temperature": temperature, "top_p": top_p}
    # Every request samples from seed 0: outputs alike, which the fixed lengths make irrelevant here.
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=0,
                            min_tokens=max_tokens, repetition_penalty=1.0, stop=(), seed=0)
    gen_kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, "min_new_tokens": max_tokens}
    gen_kwargs.update({"do_sample": False} if temperature == 0 else {"do_sample": True, "temperature": temperature,
                                                                       "top_p": 0.9, "top_k": 0})
    result: dict[str, Any] = {
        "config": {
            "model": model_name, "shape": None if model else shape, "device": device,
            "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
            "dtype": str(engine.dtype).removeprefix("torch."), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "prompt_tokens": len(prompt_ids), "max_tokens": max_tokens, "min_tokens": max_tokens,
            "sampling": sampling, "rounds": rounds, "max_running": max_running,
            "kv_tokens_per_request": engine.kv_slot_len, "engine_start_s": start_s,
            "decode_graphs": engine._graph_mode, "concurrency": concurrency, "paths": paths,
        },
        "baselines": {},
        "runs": [],
    }
    # Warm-up: first calls allocate and pick kernels.
    say("warm-up")
    await run_engine(engine, prompt_ids, concurrency=2, rounds=1,
                     params=dataclasses.replace(params, max_tokens=2, min_tokens=2))
    if decode_tokens:
        say(f"batch-1 decode, {decode_tokens} tokens, against the copy bandwidth")
        one = await run_engine(engine, prompt_ids, concurrency=1, rounds=1, params=dataclasses.replace(
            params, max_tokens=decode_tokens, min_tokens=decode_tokens))
        bandwidth = copy_bandwidth(device, gib=2.0 if device.startswith("cuda") else 0.5)
        nbytes = weight_bytes(engine.model)
        tok_s = 1.0 / one["itl_p50_s"] if one["itl_p50_s"] else None
        result["decode_b1"] = {**one, "decode_tokens_per_s": round(tok_s, 2) if tok_s else None,
                               "weight_bytes": nbytes, "copy_bytes_per_s": round(bandwidth),
                               "bandwidth_fraction": round(tok_s * nbytes / bandwidth, 3) if tok_s else None}
        say(f"  {result['decode_b1']['decode_tokens_per_s']} tok/s, "
            f"{result['decode_b1']['bandwidth_fraction']} of the copy bandwidth")
    base = result["baselines"]
    if baselines:
        say(f"baseline: static generate() batch of {STATIC_BATCH}")
        base["static_batch"] = run_static_batch(engine.model, prompt_ids, batch=STATIC_BATCH, gen_kwargs=gen_kwargs)
        say(f"  {base['static_batch']['tokens_per_s']} tok/s")
        say(f"baseline: naive generate(), {naive_requests} requests one at a time")
        base["naive"] = run_naive(engine.model, prompt_ids, n_requests=naive_requests, gen_kwargs=gen_kwargs)
        say(f"  {base['naive']['tokens_per_s']} tok/s")
    if with_cbm:
        say(f"transformers ContinuousBatchingManager: generate_batch of {STATIC_BATCH}")
        base["transformers_cbm"] = run_cbm(engine.model, prompt_ids, n_requests=STATIC_BATCH, gen_kwargs=gen_kwargs)
        say(f"  {base['transformers_cbm']['tokens_per_s']} tok/s")

    with contextlib.ExitStack() as stack:
        url = None
        if "http" in paths:
            from pureinfer.bench.text_http import run_http_subprocess, serve_worker

            url = stack.enter_context(serve_worker(engine, max_running=max_running, max_queued=max_waiting,
                                                   max_tokens=max_tokens, device=device, dtype=dtype))
        for c in concurrency:
            run: dict[str, Any] = {"concurrency": c, "requests": c * rounds}
            if "engine" in paths:
                say(f"engine direct, concurrency {c}")
                run["engine"] = await run_engine(engine, prompt_ids, concurrency=c, rounds=rounds, params=params)
                say(f"  {run['engine']['tokens_per_s']} tok/s")
            if url is not None:
                say(f"HTTP /generate, concurrency {c}")
                body = {"max_tokens": max_tokens, "min_tokens": max_tokens, **sampling}
                run["http"] = await run_http_subprocess(url, prompt, concurrency=c, rounds=rounds, body=body)
                say(f"  {run['http']['tokens_per_s']} tok/s")
            result["runs"].append(run)
    with contextlib.suppress(Exception):
        await engine.shutdown()
    result["targets"] = evaluate_targets(result)
    if device.startswith("cuda") or decode_tokens:
        result["gpu_targets"] = evaluate_gpu_targets(result, anchor)
        if anchor:
            result["anchor"] = anchor
    return result
