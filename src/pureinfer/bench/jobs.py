"""`pureinfer bench jobs`: jobs/s and queue latency (submit -> start) through the Redis queue with
1, 2 and 4 worker processes on the demo models, and, as the baseline of the same run, the same
images through the gateway's synchronous route (`POST /generate-image`) on the same workers.

Processes, like a deployment: a gateway (`pureinfer gateway --queue redis://...`, SQLite store)
and N workers (`pureinfer worker --demo --role all --threads 1 --queue ... --queue-concurrency 1`),
which serve HTTP too, registered with the gateway for the synchronous baseline. Workers are added
one phase to the next (1, then 2, then 4), each with one torch thread: on a host with fewer cores
than workers they share the cores through the OS scheduler, and the JSON says how many there were.

Per phase:
- queue latency: jobs submitted one at a time to idle workers; `started_at - created_at` of each
  job (the worker's clock when it began, the gateway's when it accepted; one host);
- image jobs/s and enhance jobs/s: a burst of jobs submitted at once, from the first acceptance
  to the last finish (the jobs' own timestamps);
- sync images/s: the same number of the same images as concurrent `POST /generate-image` calls.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

TEMPLATE = {"template_name": "bench_enhance", "enhancer_model": "qwen_instruct", "target_model": "sdxl",
            "job_type": "image", "use_case": "enhancement", "content_mode": "sfw",
            "system_prompt": "You write SDXL prompts.", "token_limit": 16}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.prefix = f"bench-{uuid.uuid4().hex[:8]}"
        self.procs: list[subprocess.Popen[bytes]] = []
        import httpx  # here, not at the top: `pureinfer bench text` imports this module for its parser

        self.http = httpx.Client(timeout=300, trust_env=False)
        self.gateway_url = ""

    def say(self, msg: str) -> None:
        if not self.args.quiet:
            print(f"[bench jobs {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    def _start(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115  (closed with the process)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUREINFER_")}
        p = subprocess.Popen([sys.executable, "-m", "pureinfer.cli", *argv], stdout=log, stderr=log,
                             stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self.procs.append(p)
        return p

    def _wait(self, url: str, timeout_s: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a process exited ({p.args}); logs in {self.tmp}")
            try:
                if self.http.get(url, timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{url} not ready in {timeout_s} s")

    def start_gateway(self) -> None:
        port = _free_port()
        self.gateway_url = f"http://127.0.0.1:{port}"
        self._start(["gateway", "--port", str(port), "--cache-dir", str(self.tmp / "gw"), "--queue", self.args.redis,
                     "--queue-prefix", self.prefix, "--log-level", "WARNING", "--audit-prompts", "none"], "gateway")
        self._wait(f"{self.gateway_url}/health")
        r = self.http.post(f"{self.gateway_url}/templates", json=TEMPLATE)
        r.raise_for_status()

    def add_worker(self, i: int) -> None:
        port = _free_port()
        self._start(["worker", "--demo", "--role", "all", "--port", str(port), "--cache-dir", str(self.args.cache_dir),
                     "--threads", "1", "--queue", self.args.redis, "--queue-prefix", self.prefix,
                     "--queue-concurrency", "1", "--log-level", "WARNING", "--log-prompts", "none"], f"worker-{i}")
        url = f"http://127.0.0.1:{port}"
        self._wait(f"{url}/health/ready")
        r = self.http.post(f"{self.gateway_url}/workers", json={"url": url, "worker_type": "all"})
        r.raise_for_status()

    # -- the measurements ------------------------------------------------------------------------
    def image(self, i: int) -> dict[str, Any]:
        a = self.args
        return {"prompt": f"a lighthouse at dusk, study {i}", "width": a.size, "height": a.size, "steps": a.steps,
                "seed": i}

    def submit(self, body: dict[str, Any]) -> str:
        r = self.http.post(f"{self.gateway_url}/jobs", json=body)
        r.raise_for_status()
        return str(r.json()["job_id"])

    def finish(self, ids: list[str], timeout_s: float = 1800) -> list[dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(ids) - len(done)} jobs unfinished after {timeout_s} s")
            for job_id in ids:
                if job_id not in done:
                    job = self.http.get(f"{self.gateway_url}/jobs/{job_id}").json()
                    if job["status"] in ("succeeded", "failed", "cancelled"):
                        done[job_id] = job
            time.sleep(0.02)
        jobs = [done[i] for i in ids]
        failed = [j for j in jobs if j["status"] != "succeeded"]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs did not succeed: {failed[0]['error']}")
        return jobs

    def queue_latency(self, n: int) -> dict[str, float]:
        ms = []
        for i in range(self.args.latency_jobs):
            job = self.finish([self.submit({"type": "image", "params": self.image(10_000 + i)})])[0]
            ms.append((_ts(job["started_at"]) - _ts(job["created_at"])) * 1000)
        return {"p50": round(_pct(ms, 0.5), 2), "p95": round(_pct(ms, 0.95), 2), "n": len(ms)}

    def burst(self, bodies: list[dict[str, Any]]) -> dict[str, float]:
        ids = [self.submit(b) for b in bodies]
        jobs = self.finish(ids)
        t0 = min(_ts(j["created_at"]) for j in jobs)
        t1 = max(_ts(j["finished_at"]) for j in jobs)
        lat = [(_ts(j["started_at"]) - _ts(j["created_at"])) * 1000 for j in jobs]
        return {"jobs_per_s": round(len(jobs) / (t1 - t0), 3), "seconds": round(t1 - t0, 3),
                "queue_wait_ms_p50": round(_pct(lat, 0.5), 1)}

    def sync(self, n_images: int) -> dict[str, float]:
        def one(i: int) -> None:
            r = self.http.post(f"{self.gateway_url}/generate-image", json=self.image(i))
            r.raise_for_status()
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(n_images) as pool:
            list(pool.map(one, range(n_images)))
        s = time.perf_counter() - t0
        return {"images_per_s": round(n_images / s, 3), "seconds": round(s, 3)}

    def phase(self, n: int) -> dict[str, Any]:
        a = self.args
        self.say(f"{n} worker(s): warm-up")
        self.finish([self.submit({"type": "image", "params": self.image(i)}) for i in range(n)])
        self.say(f"{n} worker(s): queue latency ({a.latency_jobs} jobs one at a time)")
        latency = self.queue_latency(n)
        self.say(f"{n} worker(s): {a.jobs} image jobs at once")
        images = self.burst([{"type": "image", "params": self.image(100 + i)} for i in range(a.jobs)])
        self.say(f"{n} worker(s): {a.jobs} enhance jobs at once")
        enhance = self.burst([{"type": "enhance", "params": {"prompt": f"a fox {i}"}} for i in range(a.jobs)])
        self.say(f"{n} worker(s): {a.jobs} images through POST /generate-image")
        sync = self.sync(a.jobs)
        return {"workers": n, "queue_latency_ms": latency, "image_jobs": images, "enhance_jobs": enhance,
                "sync_images": sync}

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        try:
            import redis

            r = redis.Redis.from_url(self.args.redis)
            keys = list(r.scan_iter(f"{self.prefix}:*"))
            if keys:
                r.delete(*keys)
            r.close()
        except Exception as exc:  # cleanup only: the results stand
            self.say(f"redis cleanup failed: {exc}")
        self.http.close()


def main(args: argparse.Namespace) -> int:
    from pureinfer.engines.demo.build import ensure_demo_models

    counts = sorted({int(x) for x in args.workers.split(",")})
    with tempfile.TemporaryDirectory(prefix="pureinfer-bench-jobs-") as tmp:
        args.cache_dir = Path(args.cache_dir or Path(tmp) / "cache")
        ensure_demo_models(args.cache_dir / "demo-models", text=True, image=True)  # once, not per worker
        b = Bench(args, Path(tmp))
        load_start = os.getloadavg()[0]
        phases = []
        try:
            b.start_gateway()
            running = 0
            for n in counts:
                while running < n:
                    b.say(f"starting worker {running + 1}")
                    b.add_worker(running)
                    running += 1
                phases.append(b.phase(n))
        finally:
            b.close()
    by_n = {p["workers"]: p for p in phases}
    speedup = (round(by_n[2]["image_jobs"]["jobs_per_s"] / by_n[1]["image_jobs"]["jobs_per_s"], 3)
               if 1 in by_n and 2 in by_n else None)
    p50s = [p["queue_latency_ms"]["p50"] for p in phases]
    out = {
        "benchmark": "jobs",
        "machine": {"cpu_count": os.cpu_count(), "affinity_cpus": len(os.sched_getaffinity(0)),
                    "load_avg_1m_at_start": round(load_start, 2), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "setup": {"queue": "redis streams", "worker_role": "all", "torch_threads_per_worker": 1,
                  "queue_concurrency_per_worker": 1, "image": f"{args.size}x{args.size}, {args.steps} steps (demo SDXL)",
                  "enhance": "demo text model, 16 tokens", "jobs_per_burst": args.jobs,
                  "cores_shared": "each worker one torch thread; workers beyond the cores share them through "
                                  "the OS scheduler"},
        "phases": phases,
        "targets": {"queue_overhead_p50_ms": {"target": 10.0, "measured": max(p50s) if p50s else None,
                                              "met": bool(p50s) and max(p50s) <= 10.0},
                    "image_speedup_1_to_2": {"target": 1.6, "measured": speedup,
                                             "met": speedup is not None and speedup >= 1.6}},
    }
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("jobs", help="jobs/s and queue latency through Redis with 1, 2, 4 workers vs the sync route")
    p.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    p.add_argument("--jobs", type=int, default=16, help="jobs in each burst (and sync images)")
    p.add_argument("--latency-jobs", type=int, default=20, help="jobs submitted one at a time for the queue latency")
    p.add_argument("--steps", type=int, default=4, help="denoising steps of each image")
    p.add_argument("--size", type=int, default=64, help="image width and height")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="the Redis server (a fresh key prefix is used)")
    p.add_argument("--cache-dir", default=None, help="where the demo models are built (default: a temp dir)")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    p.add_argument("--quiet", action="store_true", help="JSON only, no progress on stderr")
    p.set_defaults(func=main)
