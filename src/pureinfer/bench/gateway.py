"""`pureinfer bench gateway`: the latency the gateway adds (p50/p95) and requests/s, against
calling the worker directly, on the demo model.

Three processes, like a deployment: a worker (`pureinfer worker --demo`), a gateway
(`pureinfer gateway`, SQLite store) and this client. Each iteration sends the same work twice,
interleaved: directly to the worker's `/enhance` (signed, the exact messages the gateway would
build) and through the gateway's `/enhance-prompt`; temperature 0 and a fixed token count make
the model's share equal, so the difference is the gateway's (template selection, signing,
routing, one extra HTTP hop, audit). Prompts differ per iteration so that no signature repeats.

`--engine echo` runs the real worker app around `EchoTextEngine` (engines/demo/echo.py), a
model-free engine: the gateway's share is the same, only the model's share disappears. The
default is the demo model; echo is chosen by itself only where the transformers engine cannot be
imported. (The gateway's tests use fake workers and the real worker on the demo model, not this.)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pureinfer.engines.demo.echo import EchoTextEngine

SYSTEM = "You rewrite short image ideas into prompts for the SDXL image model."
KEY, SECRET, ADMIN = "bench-worker-key", "bench-worker-secret", "bench-admin"


def hf_engine_available() -> bool:
    try:
        import pureinfer.engines.text.engine  # noqa: F401
    except ImportError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_echo_worker(port: int, cache_dir: str) -> None:
    import uvicorn

    from pureinfer.settings import WorkerSettings
    from pureinfer.worker.app import create_app

    settings = WorkerSettings(demo=True, cache_dir=Path(cache_dir), port=port, api_keys=[KEY], signing_secret=SECRET,
                              log_prompts="none", log_level="WARNING")
    app = create_app(settings, text_engines={"qwen_instruct": EchoTextEngine()})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _summary(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": round(_pct(ms, 50), 3), "p95_ms": round(_pct(ms, 95), 3),
            "mean_ms": round(statistics.fmean(ms), 3)}


async def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a bench server exited early")
            try:
                if (await c.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready")


async def _measure(args: argparse.Namespace, worker_url: str, gateway_url: str, engine: str,
                   pids: dict[str, int]) -> dict[str, Any]:
    import httpx
    import psutil

    from pureinfer.security import sign

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=120, limits=limits) as c:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        r = await c.post(f"{gateway_url}/templates", headers=admin, json={
            "template_name": "bench", "enhancer_model": "qwen_instruct", "target_model": "sdxl", "job_type": "image",
            "use_case": "enhancement", "content_mode": "sfw", "system_prompt": SYSTEM, "token_limit": args.max_tokens})
        r.raise_for_status()
        (await c.post(f"{gateway_url}/workers", headers=admin,
                      json={"url": worker_url, "models": ["qwen_instruct"]})).raise_for_status()
        counter = iter(range(10**9))
        worker_ms: dict[str, list[float]] = {"direct": [], "gateway": []}

        async def direct() -> float:
            prompt = f"a lighthouse in a storm, take {next(counter)}"
            body = json.dumps({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                               "max_tokens": args.max_tokens, "temperature": 0, "min_tokens": args.max_tokens,
                               "model": "qwen_instruct"}, separators=(",", ":")).encode()
            headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json",
                       **sign(SECRET, "POST", "/enhance", body)}
            t = time.perf_counter()
            resp = await c.post(f"{worker_url}/enhance", content=body, headers=headers)
            dt = time.perf_counter() - t
            resp.raise_for_status()
            worker_ms["direct"].append(resp.json()["generation_time"] * 1000)
            return dt * 1000

        async def via_gateway() -> float:
            prompt = f"a lighthouse in a storm, take {next(counter)}"
            t = time.perf_counter()
            resp = await c.post(f"{gateway_url}/enhance-prompt", headers=admin,
                                json={"prompt": prompt, "temperature": 0})
            dt = time.perf_counter() - t
            resp.raise_for_status()
            worker_ms["gateway"].append(resp.json()["execution_metadata"]["generation_time"] * 1000)
            return dt * 1000

        for _ in range(args.warmup):
            await direct()
            await via_gateway()
        d_ms: list[float] = []
        g_ms: list[float] = []
        procs = {name: psutil.Process(pid) for name, pid in pids.items()}

        def cpu() -> dict[str, float]:
            return {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
        worker_ms = {"direct": [], "gateway": []}
        for i in range(args.requests):  # interleaved, alternating who goes first
            pair = (direct, via_gateway) if i % 2 == 0 else (via_gateway, direct)
            for fn in pair:
                (d_ms if fn is direct else g_ms).append(await fn())
        # CPU time each server process spends per request (user + system): unlike wall-clock
        # latency, it does not depend on what else runs on the machine.
        c0 = cpu()
        for _ in range(args.requests):
            await via_gateway()
        c1 = cpu()
        cpu_ms = {name: round((c1[name] - c0[name]) / args.requests * 1000, 3) for name in procs}

        async def throughput(fn: Any) -> float:
            n = args.requests
            todo = iter(range(n))

            async def loop() -> None:
                for _ in todo:
                    await fn()
            t = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(args.concurrency)))
            return n / (time.perf_counter() - t)

        # The model's own time, as the worker reports it, taken out per request: what is left is
        # HTTP, serving and (for the gateway path) the gateway; robust to a noisy shared machine.
        d_net = [t - w for t, w in zip(d_ms, worker_ms["direct"], strict=False)]
        g_net = [t - w for t, w in zip(g_ms, worker_ms["gateway"], strict=False)]  # later calls not paired
        rps_direct = await throughput(direct)
        rps_gateway = await throughput(via_gateway)
    d, g = _summary(d_ms), _summary(g_ms)
    wd, wg = worker_ms["direct"][:len(d_ms)], worker_ms["gateway"][:len(g_ms)]
    return {
        "engine": engine, "requests": args.requests, "max_tokens": args.max_tokens, "concurrency": args.concurrency,
        "cpus": os.cpu_count(), "worker_processes": 1, "worker_threads": worker_threads(1) if engine == "demo" else None,
        "direct": d, "gateway": g,
        "added_p50_ms": round(g["p50_ms"] - d["p50_ms"], 3), "added_p95_ms": round(g["p95_ms"] - d["p95_ms"], 3),
        "worker_generation_p50_ms": {"direct": round(_pct(wd, 50), 3), "gateway": round(_pct(wg, 50), 3)},
        "added_p50_net_of_generation_ms": round(_pct(g_net, 50) - _pct(d_net, 50), 3),
        "added_p95_net_of_generation_ms": round(_pct(g_net, 95) - _pct(d_net, 95), 3),
        "rps_direct": round(rps_direct, 1), "rps_gateway": round(rps_gateway, 1),
        "cpu_ms_per_request_via_gateway": cpu_ms,
        "target_p50_added_ms": 5.0,
    }


def worker_threads(workers: int) -> int:
    """Each worker process's torch threads: the cores of this process's affinity mask divided
    among the workers the bench starts (at least one), so they do not fight over the cores."""
    return max(1, len(os.sched_getaffinity(0)) // workers)


def main(args: argparse.Namespace) -> int:
    engine = getattr(args, "engine", None) or ("demo" if hf_engine_available() else "echo")
    tmp = Path(args.cache_dir or tempfile.mkdtemp(prefix="pureinfer-bench-"))
    wport, gport = _free_port(), _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PUREINFER_LOG_LEVEL": "WARNING"}
    if engine == "demo":
        wcmd = [sys.executable, "-m", "pureinfer.cli", "worker", "--demo", "--port", str(wport), "--api-key", KEY,
                "--signing-secret", SECRET, "--cache-dir", str(tmp), "--log-prompts", "none", "--log-level", "WARNING",
                "--threads", str(worker_threads(1))]
    else:
        wcmd = [sys.executable, "-c", f"from pureinfer.bench.gateway import _serve_echo_worker as s; "
                                      f"s({wport}, {str(tmp)!r})"]
    gcmd = [sys.executable, "-m", "pureinfer.cli", "gateway", "--port", str(gport), "--cache-dir", str(tmp / "gw"),
            "--admin-key", ADMIN, "--worker-api-key", KEY, "--worker-signing-secret", SECRET, "--log-level", "WARNING"]
    procs = [subprocess.Popen(wcmd, env=env, stdout=subprocess.DEVNULL),
             subprocess.Popen(gcmd, env={**env, "PUREINFER_LOG_PROMPTS": "none"}, stdout=subprocess.DEVNULL)]
    try:
        async def run() -> dict[str, Any]:
            worker_url, gateway_url = f"http://127.0.0.1:{wport}", f"http://127.0.0.1:{gport}"
            await _wait_ready(worker_url + "/health/ready", procs)
            await _wait_ready(gateway_url + "/health", procs)
            return await _measure(args, worker_url, gateway_url, engine,
                                  {"worker": procs[0].pid, "gateway": procs[1].pid})
        result = asyncio.run(run())
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    print(json.dumps(result, indent=2))
    if not args.quiet:
        d, g = result["direct"], result["gateway"]
        say = functools.partial(print, file=sys.stderr)
        say(f"engine={result['engine']} requests={result['requests']} max_tokens={result['max_tokens']} "
            f"cpus={result['cpus']}")
        say(f"direct   p50 {d['p50_ms']:8.2f} ms  p95 {d['p95_ms']:8.2f} ms  {result['rps_direct']:7.1f} req/s "
              f"(concurrency {result['concurrency']})")
        say(f"gateway  p50 {g['p50_ms']:8.2f} ms  p95 {g['p95_ms']:8.2f} ms  {result['rps_gateway']:7.1f} req/s")
        say(f"added    p50 {result['added_p50_ms']:8.2f} ms  p95 {result['added_p95_ms']:8.2f} ms  "
              f"(target: p50 <= {result['target_p50_added_ms']} ms)")
        w = result["worker_generation_p50_ms"]
        say(f"model time p50 (worker-reported): direct {w['direct']:.2f} ms, via gateway {w['gateway']:.2f} ms; "
              f"added net of it: p50 {result['added_p50_net_of_generation_ms']:.2f} ms, "
              f"p95 {result['added_p95_net_of_generation_ms']:.2f} ms")
        say(f"CPU per request through the gateway: {result['cpu_ms_per_request_via_gateway']} ms")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("gateway", help="the gateway's added latency and req/s vs calling the worker directly")
    p.add_argument("--requests", type=int, default=200, help="measured requests per target")
    p.add_argument("--concurrency", type=int, default=4, help="clients for the requests/s part")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured requests per target first")
    p.add_argument("--max-tokens", type=int, default=8, help="output tokens of each request")
    p.add_argument("--cache-dir", default=None, help="where the demo model is built (default: a temp dir)")
    p.add_argument("--engine", choices=["demo", "echo"], default=None,
                   help="demo: the tiny demo model (default when the transformers engine is installed); "
                        "echo: the worker app around a no-model engine")
    p.add_argument("--quiet", action="store_true", help="JSON only, no summary on stderr")
    p.set_defaults(func=main)
