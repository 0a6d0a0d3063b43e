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
from typing import Any

# Each module defines `register(subparsers)` adding its subcommands with `set_defaults(func=...)`;
# the commands are listed in this order. A command line that names its command builds only that
# module's parser: `bench text` must not import the web and settings stack it does not use (it
# runs on bare GPU machines), and the worker's and gateway's help texts read their settings.
COMMAND_MODULES = {
    "pureinfer.serve": ("serve",),
    "pureinfer.worker.cli": ("worker", "demo-models", "sign"),
    "pureinfer.gateway.cli": ("gateway", "templates"),
    "pureinfer.bench.cli": ("bench",),
}

EPILOG = """\
start here:
  pureinfer serve --demo                 everything in one process, offline; the console at 127.0.0.1:8080/ui
  pureinfer worker --demo --role all     a worker on tiny demo models, offline, at 127.0.0.1:8000
  curl -s localhost:8000/chat -H 'Content-Type: application/json' \\
    -d '{"messages":[{"role":"user","content":"A sunset"}],"max_tokens":40}'

`pureinfer COMMAND --help` lists a command's flags with their defaults; the flags of serve,
worker, gateway and templates are also environment variables (PUREINFER_PORT=8001)."""


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


def _attach_console(app: Any) -> None:
    from pureinfer.console import attach_console

    attach_console(app)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or only `command`'s part when it names one of ours."""
    parser = argparse.ArgumentParser(prog="pureinfer", description=__doc__, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    modules = [m for m, commands in COMMAND_MODULES.items() if command in commands] or list(COMMAND_MODULES)
    for name in modules:
        importlib.import_module(name).register(sub)
    for name, child in subparsers(parser):
        child.formatter_class = HelpFormatter
        if name == "gateway":  # a split deployment's gateway serves the console too, as `serve` does
            child.set_defaults(attach=[_attach_console])
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
