"""`bench image` in miniature: the report's shape, and exact batching keeping sequential pixels."""

from __future__ import annotations

import argparse


async def test_bench_reports_all_modes() -> None:
    from pureinfer.bench.image import run_image_bench

    report = await run_image_bench(device="cpu", size=64, steps=2, batch=2, requests=2)
    assert report["model"] == "random-tiny" and report["size"] == "64x64" and report["requests"] == 2
    modes = report["modes"]
    assert list(modes) == ["sequential", "batched_exact", "batched_fast"]
    assert modes["sequential"]["batch_sizes"] == {"1": 2}
    assert modes["batched_exact"]["batch_sizes"] == {"2": 1}
    assert modes["batched_exact"]["pixels_identical_to_sequential"]["all"] is True
    fast = modes["batched_fast"]["pixels_identical_to_sequential"]
    assert set(fast) == {"all", "images_differing", "max_abs_diff_uint8", "mean_abs_diff_uint8"}
    targets = report["targets"]  # the GPU targets, evaluated on whatever ran (no peak memory on the CPU)
    assert targets["peak_memory_gb"] is None and targets["batched_s_per_image"] is None  # batch 2 < 4
    assert targets["max_abs_diff_uint8_pass"] is (fast["max_abs_diff_uint8"] <= 2)
    for fig in modes.values():
        assert fig["images_per_s"] > 0 and fig["latency_s"]["max"] >= fig["latency_s"]["p50"] > 0
    assert modes["batched_fast"]["speedup_vs_sequential"] > 0


def test_parser_registers_under_bench() -> None:
    from pureinfer.bench.image import add_parser, main

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["image", "--device", "cpu", "--size", "64", "--steps", "1", "--batch", "2"])
    assert args.func is main and args.size == 64 and args.modes == "sequential,batched_exact,batched_fast"
