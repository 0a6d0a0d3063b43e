"""`bench image` in miniature: the report's shape, and exact batching keeping sequential pixels."""

from __future__ import annotations

import argparse


async def test_bench_reports_all_modes() -> None:
    from pureinfer.bench.image import run_image_bench

    report = await run_image_bench(device="cpu", size=64, steps=2, batch=2, requests=2)
    assert set(report) == {"model", "device", "dtype", "torch_threads", "size", "steps", "scheduler", "requests",
                           "max_batch", "load_s", "modes", "targets"}
    assert (report["model"], report["device"], report["dtype"], report["size"], report["steps"],
            report["scheduler"], report["requests"], report["max_batch"]) == (
        "random-tiny", "cpu", "float32", "64x64", 2, "euler", 2, 2)
    modes = report["modes"]
    assert list(modes) == ["sequential", "batched_exact", "batched_fast"]
    figures = {"wall_s", "images_per_s", "seconds_per_image", "latency_s", "batch_sizes"}
    assert set(modes["sequential"]) == figures
    assert set(modes["batched_exact"]) == set(modes["batched_fast"]) == figures | {
        "pixels_identical_to_sequential", "speedup_vs_sequential"}
    # each mode ran every request in the batches its name says (the warm-up request not counted)
    assert modes["sequential"]["batch_sizes"] == {"1": 2}
    assert modes["batched_exact"]["batch_sizes"] == modes["batched_fast"]["batch_sizes"] == {"2": 1}
    # exact batching keeps the sequential pixels, bit for bit
    assert modes["batched_exact"]["pixels_identical_to_sequential"] == {
        "all": True, "images_differing": 0, "max_abs_diff_uint8": 0, "mean_abs_diff_uint8": 0.0}
    fast = modes["batched_fast"]["pixels_identical_to_sequential"]
    assert set(fast) == {"all", "images_differing", "max_abs_diff_uint8", "mean_abs_diff_uint8"}
    assert fast["all"] == (fast["images_differing"] == 0) == (fast["max_abs_diff_uint8"] == 0)
    assert 0 <= fast["images_differing"] <= 2
    targets = report["targets"]  # the GPU targets, evaluated on whatever ran (no peak memory on the CPU)
    assert targets["peak_memory_gb"] is None and targets["batched_s_per_image"] is None  # batch 2 < 4
    assert targets["max_abs_diff_uint8_pass"] is (fast["max_abs_diff_uint8"] <= 2)
    for fig in modes.values():
        assert abs(2 * fig["seconds_per_image"] - fig["wall_s"]) <= 0.002  # both rounded from one wall time
        assert fig["latency_s"]["max"] >= fig["latency_s"]["p50"] > 0
    # the speedups are the report's own ratios (their size depends on the machine's load: not asserted)
    for mode in ("batched_exact", "batched_fast"):
        assert modes[mode]["speedup_vs_sequential"] == round(
            modes[mode]["images_per_s"] / modes["sequential"]["images_per_s"], 2)


def test_parser_registers_under_bench() -> None:
    from pureinfer.bench.image import add_parser, main

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["image", "--device", "cpu", "--size", "64", "--steps", "1", "--batch", "2"])
    assert args.func is main and args.size == 64 and args.modes == "sequential,batched_exact,batched_fast"
