"""Bounded load on loopback against real processes, as users run them: `pureinfer worker --demo`
alone, then `pureinfer gateway` in front of two such workers; 64 concurrent callers, mixed
streaming and not (tests/support/loadgen.py). Prints JSON: statuses (only success and the designed
503 with Retry-After are allowed), p50/p95 latency, requests/s, each process's RSS after warm-up
and at the end (growth must stay under 10%), and the admission slots left in flight afterwards
(must be 0). CI runs a short version: tests/reliability/test_load.py.

    PYTHONPATH=src python scripts/load.py                 # 5 minutes per target
    PYTHONPATH=src python scripts/load.py --minutes 1 --targets worker --out load.json

Exit status 1 when a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.support
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def in_flight(url: str, key: str, secret: str) -> int | None:
    import httpx

    from pureinfer.security import sign

    r = httpx.get(f"{url}/status", headers={"Authorization": f"Bearer {key}", **sign(secret, "GET", "/status", b"")},
                  timeout=30, trust_env=False)

    def find(node: object) -> int | None:
        if isinstance(node, dict):
            if isinstance(node.get("requests_in_flight"), int):
                return node["requests_in_flight"]
            for v in node.values():
                if (found := find(v)) is not None:
                    return found
        return None

    return find(r.json())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="per target")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--warmup-fraction", type=float, default=0.2, help="RSS baseline taken after this share")
    p.add_argument("--targets", default="worker,gateway")
    p.add_argument("--out")
    args = p.parse_args()

    import httpx
    from tests.support.live import free_port
    from tests.support.loadgen import GATEWAY_MIX, WORKER_MIX, run_load
    from tests.support.product import ProductProcess, get_ok
    from tests.support.targets import ADMIN_KEY, CALLER_KEY, WORKER_KEY, WORKER_SECRET, demo_cache

    from pureinfer.engines.demo.build import ensure_demo_models

    duration = args.minutes * 60
    results, ok = [], True
    with tempfile.TemporaryDirectory(prefix="pureinfer-load-") as tmp_name:
        tmp = Path(tmp_name)
        built = ensure_demo_models(tmp / "built", text=True, image=False)
        cache = demo_cache(tmp / "cache", built / "text")
        procs: list[ProductProcess] = []

        def worker(name: str) -> tuple[ProductProcess, str]:
            port = free_port()
            proc = ProductProcess(name, ["worker", "--demo", "--role", "chat", "--port", str(port), "--cache-dir",
                                         str(cache), "--api-key", WORKER_KEY, "--signing-secret", WORKER_SECRET,
                                         "--log-level", "WARNING"], tmp).start()
            procs.append(proc)
            url = f"http://127.0.0.1:{port}"
            proc.wait_until(lambda: get_ok(f"{url}/health/ready"), "readiness", timeout_s=600)
            return proc, url

        try:
            for target in args.targets.split(","):
                watched: dict[str, int] = {}
                workers = [worker(f"{target}-worker-{i}") for i in range(1 if target == "worker" else 2)]
                for proc, _ in workers:
                    watched[proc.name] = proc.proc.pid
                if target == "worker":
                    url, mix, key, secret = workers[0][1], WORKER_MIX, WORKER_KEY, WORKER_SECRET
                else:
                    gcache = tmp / "gateway-cache"
                    imp = ProductProcess("templates", ["templates", "import", "--starter", "--cache-dir", str(gcache)],
                                         tmp).start()
                    assert imp.run_to_end() == 0, imp.log_tail()
                    port = free_port()
                    gw = ProductProcess("gateway", [
                        "gateway", "--port", str(port), "--cache-dir", str(gcache), "--api-key", CALLER_KEY,
                        "--admin-key", ADMIN_KEY, "--worker-api-key", WORKER_KEY, "--worker-signing-secret",
                        WORKER_SECRET, "--log-level", "WARNING"], tmp).start()
                    procs.append(gw)
                    url = f"http://127.0.0.1:{port}"
                    gw.wait_until(lambda url=url: get_ok(f"{url}/health"), "health")
                    for _, wurl in workers:
                        httpx.post(f"{url}/workers", json={"url": wurl, "worker_type": "chat",
                                                          "models": ["qwen_instruct"]},
                                   headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60,
                                   trust_env=False).raise_for_status()
                    watched["gateway"] = gw.proc.pid
                    mix, key, secret = GATEWAY_MIX, CALLER_KEY, None
                rss: dict[str, dict[str, int]] = {n: {"start": rss_bytes(pid)} for n, pid in watched.items()}

                def tick(elapsed: float, watched: dict[str, int] = watched,
                         rss: dict[str, dict[str, int]] = rss) -> None:
                    for n, pid in watched.items():
                        now = rss_bytes(pid)
                        if elapsed >= duration * args.warmup_fraction and "after_warmup" not in rss[n]:
                            rss[n]["after_warmup"] = now
                        if "after_warmup" in rss[n]:
                            rss[n]["max_after_warmup"] = max(rss[n].get("max_after_warmup", 0), now)

                report = asyncio.run(run_load(target, url, mix, clients=args.clients, duration_s=duration,
                                              key=key, secret=secret, on_tick=tick))
                for n, pid in watched.items():
                    rss[n]["end"] = rss_bytes(pid)
                    base = rss[n].get("after_warmup") or rss[n]["start"]
                    rss[n]["growth_after_warmup"] = round((rss[n]["end"] - base) / base, 4)
                report.rss = {n: {k: (round(v / 2**20, 1) if k != "growth_after_warmup" else v)
                                  for k, v in d.items()} for n, d in rss.items()}  # MiB
                out = report.as_dict()
                left = {}
                for proc, wurl in workers:
                    deadline = time.monotonic() + 60
                    while (n := in_flight(wurl, WORKER_KEY, WORKER_SECRET)) and time.monotonic() < deadline:
                        time.sleep(0.2)
                    left[proc.name] = n
                out["slots_in_flight_after"] = left
                out["checks"] = {
                    "only_allowed_statuses": not report.unexpected,
                    "rss_growth_under_10pct": all(d["growth_after_warmup"] < 0.10 for d in rss.values()),
                    "no_slot_leaked": all(v == 0 for v in left.values()),
                }
                ok &= all(out["checks"].values())
                results.append(out)
                print(json.dumps(out), file=sys.stderr)
                for proc in list(procs):
                    proc.stop()
                    procs.remove(proc)
        finally:
            for proc in procs:
                proc.kill()
    doc = {"kind": "load", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                       "load_average_at_end": os.getloadavg()},
           "minutes_per_target": args.minutes, "results": results}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
