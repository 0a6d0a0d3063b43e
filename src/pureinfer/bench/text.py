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

The HTTP path measures TTFT at the first SSE text event: with the random-weight demo models most
sampled ids are outside the small demo tokenizer and decode to no text, so over HTTP the first
text can come well after the first token. The engine path sees every token.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

DEFAULT_CONCURRENCY = "1,4,16,64"
TARGETS = {"vs_naive": 4.5, "vs_static_batch": 0.85, "http_vs_engine": 0.90, "e2e_p95_over_p50": 1.5}
STATIC_BATCH = 16


def add_parser(sub: Any, name: str = "text") -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="continuous batching vs naive generate(): text throughput and latency")
    p.add_argument("--model", help="model folder or hub id (default: build the random-weight demo of --shape)")
    p.add_argument("--shape", default="qwen2.5-0.5b", choices=["tiny", "qwen2.5-0.5b", "qwen2.5-7b"],
                   help="demo architecture when no --model")
    p.add_argument("--concurrency", default=DEFAULT_CONCURRENCY, help="concurrent clients, comma-separated: one run each")
    p.add_argument("--rounds", type=int, default=1, help="requests each client sends back to back")
    p.add_argument("--prompt-tokens", type=int, default=16, help="prompt length in tokens")
    p.add_argument("--max-tokens", type=int, default=32, help="output length in tokens")
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy; top_p is 0.9")
    p.add_argument("--naive-requests", type=int, default=3, help="requests for the naive baseline")
    p.add_argument("--paths", default="engine,http", help="which paths to run, comma-separated: engine (in process), http (through the worker app)")
    p.add_argument("--no-baselines", action="store_true", help="skip the naive and static-batch baselines")
    p.add_argument("--with-cbm", action="store_true",
                   help="also time transformers' ContinuousBatchingManager (generate_batch) on 16 requests")
    p.add_argument("--max-running", type=int, default=16, help="engine batch size")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    p.add_argument("--cache-dir", default=None, help="where demo models are built (default: ~/.cache/pureinfer)")
    p.add_argument("--out", help="also write the JSON to this file (default: standard output only)")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    result = asyncio.run(run_text_bench(
        model=args.model, shape=args.shape, concurrency=[int(c) for c in args.concurrency.split(",") if c],
        rounds=args.rounds, prompt_tokens=args.prompt_tokens, max_tokens=args.max_tokens,
        temperature=args.temperature, naive_requests=args.naive_requests,
        paths=[p for p in args.paths.split(",") if p], baselines=not args.no_baselines, with_cbm=args.with_cbm,
        max_running=args.max_running, device=args.device, dtype=args.dtype, cache_dir=args.cache_dir,
        progress=True,
    ))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


# -- measurements -------------------------------------------------------------------------------


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


async def run_http_subprocess(base_url: str, prompt: str, *, concurrency: int, rounds: int,
                              body: dict[str, Any]) -> dict[str, Any]:
    """`run_http` in a child process: the load generator must not share the worker's GIL (real
    clients are other processes, usually other machines)."""
    spec = json.dumps({"base_url": base_url, "prompt": prompt, "concurrency": concurrency, "rounds": rounds,
                       "body": body})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pureinfer.bench.text", "--http-client", spec,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the HTTP load generator failed: {err.decode()[-2000:]}")
    return json.loads(out)


async def run_http(base_url: str, prompt: str, *, concurrency: int, rounds: int,
                   body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    timings: list[Timing] = []
    start = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(3600.0), limits=limits) as http:

        async def client(i: int) -> None:
            for _ in range(rounds):
                t = Timing(time.perf_counter() - start)
                timings.append(t)
                async with http.stream("POST", "/generate", json={"prompt": prompt, **body, "stream": True}) as resp:
                    if resp.status_code != 200:
                        raise RuntimeError(f"/generate answered {resp.status_code}: {(await resp.aread())[:300]!r}")
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        event = json.loads(data)
                        if "error" in event:
                            raise RuntimeError(f"/generate stream error: {event['error']}")
                        if "tokens_generated" in event:
                            t.n_tokens = int(event["tokens_generated"])
                        elif event.get("text") and t.first_token is None:
                            t.first_token = time.perf_counter() - start
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


# -- the run ------------------------------------------------------------------------------------


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
    from pureinfer.settings import default_cache_dir

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    out = root / "bench-models" / shape / "text"
    if not demo_text_ready(out):
        build_text_model(out, shape)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_worker(engine: Any, *, max_running: int, max_queued: int, max_tokens: int,
                 device: str, dtype: str) -> Iterator[str]:
    """The real worker app with `engine` injected, on uvicorn in a background thread."""
    import uvicorn

    from pureinfer.settings import Role, WorkerSettings
    from pureinfer.worker.app import create_app

    port = _free_port()
    settings = WorkerSettings(
        role=Role.CHAT, host="127.0.0.1", port=port, text_models=[f"bench={engine.model_id}"],
        device=device, dtype=cast(Any, dtype),
        max_running_requests=max_running, max_queued_requests=max_queued,
        max_tokens_limit=max(max_tokens, 2000), request_timeout_s=3600.0, log_prompts="none", log_level="WARNING",
    )
    app = create_app(settings, text_engines={"bench": engine})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name="bench-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the worker app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


async def run_text_bench(
    *,
    model: str | None = None,
    shape: str = "qwen2.5-0.5b",
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
    device: str | None = None,
    dtype: str = "auto",
    cache_dir: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    import torch

    from pureinfer.engines.base import SamplingParams
    from pureinfer.engines.device import pick_device
    from pureinfer.engines.text.engine import load_text_engine

    def say(msg: str) -> None:
        if progress:
            print(f"[bench text {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    concurrency = concurrency or [int(c) for c in DEFAULT_CONCURRENCY.split(",")]
    paths = paths or ["engine", "http"]
    device = pick_device(device)
    model_dir = model or str(demo_model_dir(shape, cache_dir))
    say(f"loading {model_dir} on {device}")
    max_waiting = max(64, max(concurrency))
    engine = load_text_engine(model_dir, device=device, dtype=dtype, max_running=max_running, max_waiting=max_waiting)
    await engine.start()
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
            "model": model_dir, "shape": None if model else shape, "device": device,
            "dtype": str(engine.dtype).removeprefix("torch."), "torch_threads": torch.get_num_threads(),
            "prompt_tokens": len(prompt_ids), "max_tokens": max_tokens, "min_tokens": max_tokens,
            "sampling": sampling, "rounds": rounds, "max_running": max_running,
            "concurrency": concurrency, "paths": paths,
        },
        "baselines": {},
        "runs": [],
    }
    # Warm-up: first calls allocate and pick kernels.
    say("warm-up")
    await run_engine(engine, prompt_ids, concurrency=2, rounds=1,
                     params=dataclasses.replace(params, max_tokens=2, min_tokens=2))
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
    return result


def evaluate_targets(result: dict[str, Any]) -> dict[str, Any]:
    """The serving-engine issue's targets, at concurrency 16 (or the nearest level run)."""
    runs = result["runs"]
    if not runs:
        return {}
    run = min(runs, key=lambda r: abs(r["concurrency"] - STATIC_BATCH))
    out: dict[str, Any] = {"at_concurrency": run["concurrency"], "thresholds": TARGETS}
    eng = run.get("engine", {})
    http = run.get("http", {})
    naive = result["baselines"].get("naive", {}).get("tokens_per_s")
    static = result["baselines"].get("static_batch", {}).get("tokens_per_s")

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a and b else None

    checks = {
        "vs_naive": (ratio(eng.get("tokens_per_s"), naive), "vs_naive"),
        "vs_static_batch": (ratio(eng.get("tokens_per_s"), static), "vs_static_batch"),
        "http_vs_engine": (ratio(http.get("tokens_per_s"), eng.get("tokens_per_s")), "http_vs_engine"),
        "e2e_p95_over_p50": (ratio(eng.get("e2e_p95_s"), eng.get("e2e_p50_s")), "e2e_p95_over_p50"),
        "http_e2e_p95_over_p50": (ratio(http.get("e2e_p95_s"), http.get("e2e_p50_s")), "e2e_p95_over_p50"),
    }
    for name, (value, target) in checks.items():
        limit = TARGETS[target]
        op = "<=" if target == "e2e_p95_over_p50" else ">="
        out[name] = value
        out[f"{name}_pass"] = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return out


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--http-client":
    _spec = json.loads(sys.argv[2])
    print(json.dumps(asyncio.run(run_http(_spec["base_url"], _spec["prompt"], concurrency=_spec["concurrency"],
                                          rounds=_spec["rounds"], body=_spec["body"]))))
