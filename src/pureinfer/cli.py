"""pureinfer: a self-hosted inference backend. Workers run chat, prompt enhancement, text
generation (Qwen-class models) and SDXL images, exactly as asked; a gateway owns the prompt
templates, routes to healthy workers and keeps the audit trail."""

# Each part registers its own subcommands (COMMAND_MODULES below), so this module only assembles
# them; heavy imports (torch, FastAPI) happen inside the commands.

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator

# Each module defines `register(subparsers)` adding its subcommands with `set_defaults(func=...)`;
# the commands are listed in this order.
COMMAND_MODULES = [
    "pureinfer.worker.cli",  # worker, demo-models, sign
    "pureinfer.gateway.cli",  # gateway, templates import|export
    "pureinfer.bench.cli",  # bench text|image|gateway
]

EPILOG = """\
start here:
  pureinfer worker --demo --role all     a worker on tiny demo models, offline, at 127.0.0.1:8000
  curl -s localhost:8000/chat -H 'Content-Type: application/json' \\
    -d '{"messages":[{"role":"user","content":"A sunset"}],"max_tokens":40}'

`pureinfer COMMAND --help` lists a command's flags with their defaults; the flags of worker,
gateway and templates are also environment variables (PUREINFER_PORT=8001)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; a flag's help ends with its default when it has one
    and does not say it already. Settings flags parse to None ("not given") and state their
    default themselves (`pureinfer.settings.add_setting_flag`)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help = action.help or ""
        if (action.option_strings and "(default" not in help
                and action.default not in (None, False, argparse.SUPPRESS)):
            help += " (default: %(default)s)"
        return help


def subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (command path, parser) below `parser`, depth first: ("worker", ...), ("bench text", ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield name, child
                yield from ((f"{name} {sub}", p) for sub, p in subparsers(child))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pureinfer", description=__doc__, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for _, child in subparsers(parser):
        child.formatter_class = HelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
