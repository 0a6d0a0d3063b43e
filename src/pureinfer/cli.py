"""The `pureinfer` command. Each part registers its own subcommands (see COMMAND_MODULES), so this
module only assembles them; heavy imports (torch, FastAPI) happen inside the commands."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines `register(subparsers)` adding its subcommands with `set_defaults(func=...)`.
COMMAND_MODULES = [
    "pureinfer.bench.cli",  # bench text, bench image
    "pureinfer.worker.cli",  # worker, demo-models, sign
    "pureinfer.gateway.cli",  # gateway, templates import|export
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pureinfer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
