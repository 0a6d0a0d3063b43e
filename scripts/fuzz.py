"""Fuzz the worker (roles chat, image, all, demo models) and the gateway (in front of a demo
worker) from their OpenAPI documents with schemathesis, authenticated, as real HTTP servers on
loopback; print JSON figures. The property: zero 5xx, every 4xx the coded envelope
(tests/support/fuzz.py). CI runs a bounded version: tests/reliability/test_fuzz.py.

    PYTHONPATH=src python scripts/fuzz.py                      # 2,000 requests per app
    PYTHONPATH=src python scripts/fuzz.py --apps gateway --examples 500 --out fuzz.json

Exit status 1 when any app had a failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.support
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

APPS = ("chat", "image", "all", "gateway")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apps", default=",".join(APPS), help=f"comma-separated, of {', '.join(APPS)}")
    p.add_argument("--examples", type=int, default=2000, help="generated requests per app (about)")
    p.add_argument("--seed", type=int, help="derandomize generation")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()

    from tests.support.fuzz import fuzz_app
    from tests.support.targets import (
        ADMIN_KEY,
        REG_SECRET,
        WORKER_KEY,
        WORKER_SECRET,
        demo_cache,
        gateway_server,
        worker_server,
    )

    from pureinfer.engines.demo.build import ensure_demo_models
    from pureinfer.logging import configure_logging

    configure_logging("WARNING")  # the servers' INFO lines would be one per request
    logging.getLogger("pureinfer.http").setLevel(logging.ERROR)
    results = []
    with tempfile.TemporaryDirectory(prefix="pureinfer-fuzz-") as tmp_name:
        tmp = Path(tmp_name)
        built = ensure_demo_models(tmp / "built", text=True, image=True)
        cache = demo_cache(tmp / "cache", built / "text", built / "image")
        for app in args.apps.split(","):
            if app == "gateway":
                with worker_server("all", cache, tmp / "files") as w, gateway_server(tmp / app, [w.url]) as g:
                    report = fuzz_app("gateway", g.url, examples=args.examples, key=ADMIN_KEY, secret=REG_SECRET,
                                      seed=args.seed, cap_image_steps=True)
            else:
                with worker_server(app, cache, tmp / "files") as w:
                    report = fuzz_app(f"worker --role {app}", w.url, examples=args.examples, key=WORKER_KEY,
                                      secret=WORKER_SECRET, seed=args.seed, cap_image_steps=app != "chat",
                                      image_worker=app == "image")
            results.append(report.as_dict())
            print(json.dumps(results[-1]), file=sys.stderr)
    out = {"kind": "fuzz", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
           "examples_per_app": args.examples, "apps": results}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 1 if any(r["failures"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
