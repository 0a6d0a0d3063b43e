"""The `pureinfer` command as a user first reads it: `--help` names every command, every flag of
every command has a help line, and a settings flag states the settings' own default while it
parses to None, so that PUREINFER_* variables still apply when the flag is not given."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pureinfer.cli import HelpFormatter, build_parser, subparsers
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.settings import WorkerSettings, env_name, shown_default

SETTINGS = {"worker": WorkerSettings, "gateway": GatewaySettings, "templates import": GatewaySettings,
            "templates export": GatewaySettings}
COMMANDS = ["serve", "worker", "demo-models", "sign", "gateway", "templates", "bench"]


def flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)]


def flag(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    return next(a for a in flags(parser) if a.dest == dest)


def rendered_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """A flag's help line as `--help` prints it (the formatter adds plain defaults), unwrapped."""
    return " ".join(parser._get_formatter()._expand_help(action).split()) if action.help else ""


def one_line_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each command's one-line description, as `pureinfer --help` lists it."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.help or "" for a in sub._choices_actions}


def test_top_level_help_names_every_command_and_the_start() -> None:
    out = subprocess.run([sys.executable, "-m", "pureinfer.cli", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "COMMAND_MODULES" not in out.stdout
    section = out.stdout.split("\ncommands:\n")[1].split("\n\n")[0]
    listed = [line.split()[0] for line in section.splitlines() if re.match(r"    \S", line)]
    assert listed == COMMANDS, out.stdout
    assert "pureinfer serve --demo" in out.stdout and "pureinfer worker --demo --role all" in out.stdout
    helps = one_line_helps(build_parser())
    assert set(helps) == set(COMMANDS) and all(helps.values()), helps
    printed = " ".join(out.stdout.split())
    assert all(text in printed for text in helps.values()), out.stdout
    assert all(p.formatter_class is HelpFormatter for _, p in subparsers(build_parser()))


def test_the_pureinfer_script_runs_this_main() -> None:
    """The smoke tests start `python -m pureinfer.cli`: the same `main` as the installed script."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"pureinfer": "pureinfer.cli:main"}


def test_every_flag_of_every_command_has_a_help_line() -> None:
    missing = [f"pureinfer {name} {'/'.join(a.option_strings) or a.dest}"
               for name, parser in subparsers(build_parser()) for a in flags(parser)
               if not (a.help or "").strip()]
    assert not missing, "flags without a help line:\n" + "\n".join(missing)
    described = [name for name, parser in subparsers(build_parser()) if parser.description]
    assert set(described) >= {"worker", "gateway", "demo-models", "sign", "templates", "bench"}


@pytest.mark.parametrize("command", list(SETTINGS))
def test_settings_flags_state_the_settings_default_and_parse_to_none(command: str) -> None:
    parser = dict(subparsers(build_parser()))[command]
    settings = SETTINGS[command]
    for action in flags(parser):
        if not action.option_strings:
            continue  # `templates import FILE`
        if action.dest in ("starter", "output", "all_versions"):
            continue  # templates' own flags, not settings
        assert action.dest in settings.model_fields, f"{action.option_strings}: not a {settings.__name__} field"
        assert action.default is None, f"{action.option_strings} must parse to None so PUREINFER_* applies"
        text = rendered_help(parser, action)
        assert "(default" in text, f"{action.option_strings}: {text!r} states no default"
        if settings.model_fields[action.dest].get_default(call_default_factory=True) not in (None, []):
            assert f"(default: {shown_default(settings, action.dest)})" in text
        # the environment variable is named where it is not PUREINFER_ + the flag's name
        env = env_name(settings, action.dest)
        if env != "PUREINFER_" + action.option_strings[0].lstrip("-").replace("-", "_").upper():
            assert f"(environment: {env})" in text, text


def test_worker_flags_are_grouped() -> None:
    parser = dict(subparsers(build_parser()))["worker"]
    groups = {g.title: {a.dest for a in g._group_actions} for g in parser._action_groups}
    assert {"model", "listening", "security", "serving limits", "image storage", "gateway registration",
            "queue mode", "logging"} <= set(groups)
    assert {"queue", "no_http", "queue_concurrency"} <= groups["queue mode"]
    assert {"text_models", "image_model", "demo"} <= groups["model"]
    assert {"max_tokens_limit", "max_running_requests", "drain_timeout_s"} <= groups["serving limits"]
    assert groups["options"] == {"help"}  # no flag left outside a group
    gateway = dict(subparsers(build_parser()))["gateway"]
    assert {g.title for g in gateway._action_groups if g._group_actions} == {
        "options", "listening", "security", "storage", "workers", "templates", "jobs and webhooks",
        "audit and logging"}


def test_flag_over_environment_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the help promises: the flag wins, then PUREINFER_<FLAG>, then the default it prints."""
    from pureinfer.worker.cli import _overrides

    parser = build_parser()
    monkeypatch.setenv("PUREINFER_PORT", "9001")
    monkeypatch.setenv("PUREINFER_API_KEYS", "a,b")
    assert WorkerSettings(**_overrides(parser.parse_args(["worker"]))).port == 9001
    assert WorkerSettings(**_overrides(parser.parse_args(["worker", "--port", "9002"]))).port == 9002
    assert WorkerSettings(**_overrides(parser.parse_args(["worker"]))).api_keys == ["a", "b"]
    monkeypatch.delenv("PUREINFER_PORT")
    port = WorkerSettings(**_overrides(parser.parse_args(["worker"]))).port
    worker = dict(subparsers(parser))["worker"]
    assert f"(default: {port})" in rendered_help(worker, flag(worker, "port"))


def test_a_settings_flag_without_a_stated_none_default_is_refused() -> None:
    from pureinfer.settings import add_setting_flag

    parser = argparse.ArgumentParser()
    with pytest.raises(ValueError, match="say in the help"):
        add_setting_flag(parser, WorkerSettings, "--device", help="torch device")
    with pytest.raises(ValueError, match="no field"):
        add_setting_flag(parser, WorkerSettings, "--no-such-setting", help="x")
    with pytest.raises(ValueError, match="must be None"):
        add_setting_flag(parser, WorkerSettings, "--port", type=int, default=8000, help="port")
