"""`pureinfer bench image`: sequential vs batched image throughput and latency, in one run.

On one engine configuration each, the same N requests (same size, steps, scheduler; seeds
0..N-1) run three ways:
- ``sequential``: one request at a time;
- ``batched_exact``: all at once, batched up to ``--batch`` with `image_exact_batching` (each
  image's UNet call keeps its lone shape: pixels identical to sequential);
- ``batched_fast``: all at once, one UNet call per batch (the GPU speed-up and the CUDA default;
  pixels may differ from sequential by rounding: at most 2/255, mean under 0.5/255).
Each mode reports wall time, images/s, seconds per image, request latency (mean/p50/max), the
batch sizes the engine formed, and whether its pixels equal the sequential run's.

Models: the tiny demo model (built in a temp dir unless ``--model``), or ``--shape sdxl`` for the
real SDXL architecture with random weights built in memory (meant for ``--device cuda``).

``targets`` (the fast-path issue's, for SDXL 1024² / 20 steps on a GPU): sequential at most
1.2 s per image, batched (4 or more concurrent) at most 0.6 s per image, peak memory at most 40 GB,
batched pixels within rounding of sequential.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def add_parser(sub: Any, name: str = "image") -> argparse.ArgumentParser:
    """Register the image bench under a `bench` command's subparsers (or anywhere else)."""
    p = sub.add_parser(name, help="sequential vs batched image throughput and latency")
    p.add_argument("--model", help="SDXL folder/hub id/.safetensors (default: build the demo model)")
    p.add_argument("--shape", choices=["tiny", "sdxl"], default=None,
                   help="random-weight shape when no --model (default: tiny; sdxl with --device cuda)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--size", type=int, default=None, help="width = height (default: 256 tiny, 1024 sdxl)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: 10 tiny, 20 sdxl)")
    p.add_argument("--batch", type=int, default=4, help="image_max_batch for the batched runs")
    p.add_argument("--requests", type=int, default=None, help="requests per mode (default: 2 x batch)")
    p.add_argument("--scheduler", default="euler", choices=["euler", "euler_a", "dpmpp_2m", "ddim"],
                   help="sampler of every request")
    p.add_argument("--modes", default="sequential,batched_exact,batched_fast",
                   help="runs to compare, comma-separated; the first is the reference for pixel equality")
    p.add_argument("--out", help="also write the JSON here")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    result = asyncio.run(run_image_bench(
        model=args.model, shape=args.shape, device=args.device, size=args.size, steps=args.steps,
        batch=args.batch, requests=args.requests, scheduler=args.scheduler, modes=args.modes.split(","),
    ))
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


async def run_image_bench(*, model: str | None = None, shape: str | None = None, device: str | None = None,
                          size: int | None = None, steps: int | None = None, batch: int = 4,
                          requests: int | None = None, scheduler: str = "euler",
                          modes: list[str] | None = None) -> dict[str, Any]:
    import torch

    from pureinfer.engines.device import pick_device, pick_dtype
    from pureinfer.engines.image.sdxl import SDXLImageEngine
    from pureinfer.settings import WorkerSettings

    device = pick_device(device)
    shape = shape or ("sdxl" if device.startswith("cuda") and not model else "tiny")
    size = size or (1024 if shape == "sdxl" else 256)
    steps = steps or (20 if shape == "sdxl" else 10)
    requests = requests or 2 * batch
    modes = modes or ["sequential", "batched_exact", "batched_fast"]

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        pipe, model_id = _load(model, shape, device, pick_dtype("auto", device, image=True), Path(tmp))
    load_s = time.monotonic() - t0

    report: dict[str, Any] = {
        "model": model_id, "device": device, "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(), "size": f"{size}x{size}", "steps": steps,
        "scheduler": scheduler, "requests": requests, "max_batch": batch, "load_s": round(load_s, 2),
        "modes": {},
    }
    reference: list[Any] | None = None
    for mode in modes:
        settings = WorkerSettings(image_max_batch=1 if mode == "sequential" else batch, image_batch_wait_ms=50,
                                  image_exact_batching=(mode != "batched_fast"), max_queued_requests=10_000)
        engine = SDXLImageEngine(pipe, settings, model_id=model_id, device=device)
        await engine.start()
        try:
            figures, images = await _run_mode(engine, mode, requests, size, steps, scheduler, device)
        finally:
            await engine.shutdown()
        if reference is None:
            reference = images
        else:
            figures["pixels_identical_to_" + modes[0]] = _identical(reference, images)
        report["modes"][mode] = figures
    seq = report["modes"].get("sequential")
    for mode, fig in report["modes"].items():
        if seq and mode != "sequential":
            fig["speedup_vs_sequential"] = round(fig["images_per_s"] / seq["images_per_s"], 2)
    report["targets"] = _targets(report["modes"], batch)
    return report


TARGETS = {"sequential_s_per_image": 1.2, "batched_s_per_image": 0.6, "peak_memory_gb": 40.0,
           "max_abs_diff_uint8": 2, "mean_abs_diff_uint8": 0.5}


def _targets(modes: dict[str, Any], batch: int) -> dict[str, Any]:
    seq, fast = modes.get("sequential", {}), modes.get("batched_fast", {})
    same = fast.get("pixels_identical_to_sequential", {})
    peaks = [m["peak_memory_gb"] for m in modes.values() if "peak_memory_gb" in m]
    values = {"sequential_s_per_image": seq.get("seconds_per_image"),
              "batched_s_per_image": fast.get("seconds_per_image") if batch >= 4 else None,
              "peak_memory_gb": max(peaks) if peaks else None,
              "max_abs_diff_uint8": same.get("max_abs_diff_uint8"),
              "mean_abs_diff_uint8": same.get("mean_abs_diff_uint8")}
    out: dict[str, Any] = {"thresholds": TARGETS, **values}
    for name, limit in TARGETS.items():
        value = values[name]
        strict = name == "mean_abs_diff_uint8"
        out[f"{name}_pass"] = None if value is None else (value < limit if strict else value <= limit)
    return out


def _load(model: str | None, shape: str, device: str, dtype: Any, tmp: Path) -> tuple[Any, str]:
    if model is None:
        from pureinfer.engines.demo.image import build_image_pipeline

        pipe = build_image_pipeline(shape, work_dir=tmp, device=device, dtype=dtype)
        return pipe.to(device), f"random-{shape}"
    from pureinfer.engines.image.sdxl import load_image_engine
    from pureinfer.settings import WorkerSettings

    engine = load_image_engine(WorkerSettings(image_model=model, device=device))
    return engine._pipe, model


async def _run_mode(engine: Any, mode: str, n: int, size: int, steps: int, scheduler: str,
                    device: str) -> tuple[dict[str, Any], list[Any]]:
    import torch

    from pureinfer.engines.base import ImageRequest

    def request(i: int) -> ImageRequest:
        return ImageRequest(request_id=f"bench-{i}", prompt="a lighthouse on a cliff at dusk, oil painting",
                            negative_prompt="blurry", width=size, height=size, steps=steps, cfg_scale=7.0,
                            seed=i, scheduler=scheduler)

    await engine.generate(request(10_000))  # warm-up: kernels, allocator, caches
    warm_batches = engine.stats()["batch_sizes"]
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    latencies: list[float] = []

    async def timed(i: int) -> Any:
        t = time.monotonic()
        result = await engine.generate(request(i))
        latencies.append(time.monotonic() - t)
        return result

    t0 = time.monotonic()
    if mode == "sequential":
        results = [await timed(i) for i in range(n)]
    else:
        results = list(await asyncio.gather(*(timed(i) for i in range(n))))
    wall = time.monotonic() - t0
    stats = engine.stats()
    figures: dict[str, Any] = {
        "wall_s": round(wall, 3),
        "images_per_s": round(n / wall, 3),
        "seconds_per_image": round(wall / n, 3),
        "latency_s": {"mean": round(statistics.fmean(latencies), 3),
                      "p50": round(statistics.median(latencies), 3), "max": round(max(latencies), 3)},
        "batch_sizes": {str(k): v - warm_batches.get(k, 0) for k, v in stats["batch_sizes"].items()
                        if v - warm_batches.get(k, 0)},
    }
    if cuda:
        figures["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return figures, [r.images[0] for r in results]


def _identical(a: list[Any], b: list[Any]) -> dict[str, Any]:
    import numpy as np

    diffs = [np.abs(np.asarray(x, dtype=np.int16) - np.asarray(y, dtype=np.int16)) for x, y in zip(a, b, strict=True)]
    return {"all": all(int(d.max()) == 0 for d in diffs),
            "images_differing": sum(int(d.max()) > 0 for d in diffs),
            "max_abs_diff_uint8": max(int(d.max()) for d in diffs),
            "mean_abs_diff_uint8": round(max(float(d.mean()) for d in diffs), 4)}
