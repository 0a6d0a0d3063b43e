"""`pureinfer gateway ...`, `pureinfer templates import|export` (the benchmark is `pureinfer bench gateway`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

STARTER = Path(__file__).with_name("starter_templates.yaml")


def _settings_kwargs(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) not in (None, [], False)}


def _gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from pureinfer.gateway.app import create_app
    from pureinfer.gateway.settings import GatewaySettings
    from pureinfer.logging import configure_logging

    kwargs = _settings_kwargs(args, [
        "host", "port", "database_url", "api_keys", "admin_keys", "insecure", "worker_api_key",
        "worker_signing_secret", "registration_secret", "worker_allowlist", "default_template",
        "request_timeout_s", "log_level", "cache_dir", "allow_nsfw_fallback", "audit_retention_days",
        "max_body_bytes", "audit_prompts"])
    try:
        settings = GatewaySettings(**kwargs)
    except ValueError as exc:
        print(f"pureinfer gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                access_log=False)
    return 0


def _store(args: argparse.Namespace) -> Any:
    from pureinfer.db import open_store
    from pureinfer.gateway.settings import GatewaySettings

    settings = GatewaySettings(**_settings_kwargs(args, ["database_url", "cache_dir"]))
    return open_store(settings.effective_database_url)


def _templates_import(args: argparse.Namespace) -> int:
    from pureinfer.gateway.templates.service import import_yaml

    path = STARTER if args.starter else Path(args.file)
    try:
        counts = import_yaml(_store(args), path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"pureinfer templates import: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: {counts['created']} created, {counts['new_versions']} new versions, "
          f"{counts['unchanged']} unchanged")
    return 0


def _templates_export(args: argparse.Namespace) -> int:
    from pureinfer.gateway.templates.service import export_yaml

    text = export_yaml(_store(args), all_versions=args.all_versions)
    if args.output and args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    g = sub.add_parser("gateway", help="run the gateway (templates, routing, audit)")
    g.add_argument("--host")
    g.add_argument("--port", type=int)
    g.add_argument("--database-url", help="SQLAlchemy URL (default: sqlite file in the cache dir)")
    g.add_argument("--cache-dir")
    g.add_argument("--api-key", dest="api_keys", action="append", help="caller API key (repeatable)")
    g.add_argument("--admin-key", dest="admin_keys", action="append", help="admin API key (repeatable)")
    g.add_argument("--insecure", action="store_true", help="allow running without keys on a public address")
    g.add_argument("--worker-api-key", help="Bearer key the workers expect")
    g.add_argument("--worker-signing-secret", help="HMAC secret the workers verify")
    g.add_argument("--registration-secret", help="secret workers sign registration with (their --gateway-secret)")
    g.add_argument("--allow-worker", dest="worker_allowlist", action="append",
                   help="worker host name or CIDR allowed (repeatable; default: loopback only)")
    g.add_argument("--default-template", help="template for fallback level 3")
    g.add_argument("--allow-nsfw-fallback", action="store_true",
                   help="let sfw requests fall back to nsfw templates (level 2); off by default")
    g.add_argument("--audit-retention-days", type=float)
    g.add_argument("--audit-prompts", choices=["none", "preview", "full"],
                   help="what audit rows keep of prompts and responses: previews (default), or the exact "
                        "messages and whole response too (full), or none")
    g.add_argument("--request-timeout-s", type=float)
    g.add_argument("--max-body-bytes", type=int,
                   help="larger request bodies are refused with 413 before they are read (default: 1048576)")
    g.add_argument("--log-level")
    g.set_defaults(func=_gateway)

    t = sub.add_parser("templates", help="import or export prompt templates (YAML)")
    tsub = t.add_subparsers(dest="templates_command", required=True)
    ti = tsub.add_parser("import", help="import FILE.yaml (new versions only where content changed)")
    ti.add_argument("file", nargs="?")
    ti.add_argument("--starter", action="store_true", help="import the starter set shipped with pureinfer")
    ti.add_argument("--database-url")
    ti.add_argument("--cache-dir")
    ti.set_defaults(func=lambda a: _templates_import(a) if (a.file or a.starter) else ti.error("give FILE or --starter"))
    te = tsub.add_parser("export", help="export templates as YAML")
    te.add_argument("-o", "--output", help="file (default: stdout)")
    te.add_argument("--all-versions", action="store_true")
    te.add_argument("--database-url")
    te.add_argument("--cache-dir")
    te.set_defaults(func=_templates_export)
