"""`pureinfer bench text|image`: one `bench` command; each benchmark module adds its subcommand."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# Each module defines `add_parser(subparsers)`; heavy imports happen inside the commands.
BENCH_MODULES = ["pureinfer.bench.text", "pureinfer.bench.image", "pureinfer.bench.gateway", "pureinfer.bench.jobs"]


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "bench", help="benchmarks of the text and image engines and the gateway (JSON on stdout)",
        description="Benchmarks that print JSON, each with its baseline measured in the same run.")
    bench_sub = parser.add_subparsers(dest="bench", required=True, title="benchmarks", metavar="BENCHMARK")
    for name in BENCH_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a benchmark whose part is not installed here
            if exc.name != name:
                raise
            continue
        module.add_parser(bench_sub)
