"""`pureinfer gateway ...`, `pureinfer templates import|export` (the benchmark is `pureinfer bench gateway`)."""

from __future__ import annotations

import argparse
import signal
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

    # Every flag of `gateway` is a settings field (add_setting_flag checks that), so all of them pass.
    kwargs = _settings_kwargs(args, [k for k in vars(args) if k not in ("command", "func", "attach")])
    try:
        settings = GatewaySettings(**kwargs)
    except ValueError as exc:
        print(f"pureinfer gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    app = create_app(settings)
    # What the top floor adds to the app (the console at /ui; cli.py passes it, since the gateway
    # must not import the parts above it).
    for attach in getattr(args, "attach", ()):
        attach(app)
    # log_config=None keeps uvicorn's own lines (errors included) in our JSON handler; with its
    # default config they were plain text ("ERROR:    Exception in ASGI application").
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            access_log=False, log_config=None)

    class StoppedBySigterm(uvicorn.Server):
        """SIGTERM is the ordinary way to stop a gateway: after the graceful shutdown the command
        exits 0, as a supervisor expects. (uvicorn records the signal and raises it again once shut
        down, so the process ended "killed by SIGTERM".) Ctrl-C keeps uvicorn's behaviour."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            if sig == signal.SIGTERM:
                self.should_exit = True  # not recorded: nothing is raised again after the shutdown
                return
            super().handle_exit(sig, frame)

    server = StoppedBySigterm(config)
    server.run()
    return 0 if server.started else 3  # not started (uvicorn.run's code): the lifespan failed, logged


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


def _store_flags(parser: argparse.ArgumentParser | Any, flag: Any) -> None:
    flag(parser, "--database-url", metavar="URL",
         help="SQLAlchemy URL of the template, worker and audit store, e.g. "
              "postgresql://user@host/db (default: a sqlite file CACHE_DIR/gateway.db)")
    flag(parser, "--cache-dir", help="where the default sqlite file and the audit spill file live")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from pureinfer.gateway.settings import GatewaySettings
    from pureinfer.settings import SETTINGS_EPILOG, add_setting_flag

    def flag(group: Any, *flags: str, help: str, **kwargs: Any) -> None:
        add_setting_flag(group, GatewaySettings, *flags, help=help, **kwargs)

    g = sub.add_parser(
        "gateway", help="run the gateway: prompt templates, enhancement, routing to workers, audit",
        description="The gateway owns every prompt template, picks a healthy worker, signs and times\n"
                    "each call and keeps the audit trail: POST /enhance-prompt and /chat for callers;\n"
                    "/templates, /workers and /audit for admins. Import templates first:\n"
                    "`pureinfer templates import --starter`.",
        epilog=SETTINGS_EPILOG)
    listen = g.add_argument_group("listening")
    flag(listen, "--host", help="address to listen on; a non-loopback one needs --api-key and --admin-key, "
                                "or --insecure")
    flag(listen, "--port", type=int, help="TCP port")

    security = g.add_argument_group("security")
    flag(security, "--api-key", dest="api_keys", action="append", metavar="KEY",
         help="a caller key for /enhance-prompt and /chat (Bearer or X-API-Key); repeatable; "
              "without any, those endpoints are open")
    flag(security, "--admin-key", dest="admin_keys", action="append", metavar="KEY",
         help="an admin key for templates, workers and /audit; repeatable; without any, those are open")
    flag(security, "--insecure", action="store_true",
         help="allow a non-loopback address without keys, and worker registration without a secret")

    storage = g.add_argument_group("storage")
    _store_flags(storage, flag)

    workers = g.add_argument_group("workers")
    flag(workers, "--worker-api-key", metavar="KEY",
         help="the key workers expect (their --api-key) (default: none sent)")
    flag(workers, "--worker-signing-secret", metavar="SECRET",
         help="signs every call to a worker (their --signing-secret) (default: calls unsigned)")
    flag(workers, "--registration-secret", metavar="SECRET",
         help="workers sign registration and heartbeats with it (their --gateway-secret) "
              "(default: none; registration refused unless --insecure)")
    flag(workers, "--allow-worker", dest="worker_allowlist", action="append", metavar="HOST_OR_CIDR",
         help="a host name (name, *.suffix) or CIDR worker URLs may point at; repeatable")
    flag(workers, "--request-timeout-s", type=float,
         help="the deadline of one gateway request, retries included (then WORKER_TIMEOUT)")
    flag(listen, "--max-body-bytes", type=int,
         help="larger request bodies are refused with 413 before they are read")

    templates = g.add_argument_group("templates")
    flag(templates, "--default-template", metavar="NAME",
         help="the template of the last fallback level (default: none, no last level)")
    flag(templates, "--allow-nsfw-fallback", action="store_true",
         help="let sfw requests fall back to nsfw templates (fallback level 2)")

    jobs = g.add_argument_group("jobs and webhooks")
    flag(jobs, "--queue", metavar="memory|redis://HOST:PORT/DB",
         help="where POST /jobs queues jobs: in this process, run on the registered workers (memory), or "
              "Redis Streams for workers in queue mode and several gateways")
    flag(jobs, "--queue-prefix", help="Redis key prefix (deployments sharing one Redis use different ones)")
    flag(jobs, "--queue-visibility-timeout-s", type=float,
         help="a claimed job whose worker is silent this long is re-delivered")
    flag(jobs, "--queue-max-attempts", type=int, help="deliveries of one job before it goes to the dead letters")
    flag(jobs, "--job-worker-wait-s", type=float,
         help="memory queue: how long a job waits (queued, retried with a backoff) for a healthy worker of its "
              "type before it fails with WORKER_UNAVAILABLE / WORKER_OVERLOADED")
    flag(jobs, "--job-concurrency", type=int, help="memory queue: jobs this gateway runs on its workers at once")
    flag(jobs, "--job-retention-days", type=float, help="finished jobs older than this are deleted")
    flag(jobs, "--webhook-secret", metavar="whsec_...",
         help="signs webhooks (Standard Webhooks); jobs may give a callback_url only when it is set (default: none, no webhooks)")
    flag(jobs, "--webhook-allow", dest="webhook_allowlist", action="append", metavar="HOST_OR_CIDR",
         help="a host name or CIDR callback URLs may point at besides public addresses; repeatable")
    flag(jobs, "--webhook-max-attempts", type=int, help="deliveries of one webhook before giving up")

    logs = g.add_argument_group("audit and logging")
    flag(logs, "--audit-retention-days", type=float, help="audit records older than this are deleted")
    flag(logs, "--audit-prompts", choices=["none", "preview", "full"],
         help="what audit rows keep of prompts and responses: previews, also the exact messages and "
              "whole response (full), or none")
    flag(logs, "--log-level", help="DEBUG, INFO, WARNING or ERROR; logs are JSON lines on stderr")
    flag(logs, "--log-prompts", choices=["none", "preview", "full"],
         help="how much of a prompt or response the logs show (preview: its first 100 or 200 characters, "
              "as the seed's log lines cut them)")
    g.set_defaults(func=_gateway)

    t = sub.add_parser("templates", help="import or export prompt templates (YAML)",
                       description="Import or export the gateway's prompt templates as YAML, in the\n"
                                   "gateway's store (give the gateway's --database-url or --cache-dir).")
    tsub = t.add_subparsers(dest="templates_command", required=True, title="actions", metavar="ACTION")
    ti = tsub.add_parser("import", help="import FILE.yaml or the starter set (new versions only where content changed)",
                         epilog=SETTINGS_EPILOG)
    ti.add_argument("file", nargs="?", help="a YAML file of templates (as `templates export` writes)")
    ti.add_argument("--starter", action="store_true", help="import the starter set shipped with pureinfer")
    _store_flags(ti, flag)
    ti.set_defaults(func=lambda a: _templates_import(a) if (a.file or a.starter) else ti.error("give FILE or --starter"))
    te = tsub.add_parser("export", help="export templates as YAML",
                         epilog=SETTINGS_EPILOG)
    te.add_argument("-o", "--output", help="file, or - for standard output (default: standard output)")
    te.add_argument("--all-versions", action="store_true", help="every version of each template, not only the latest")
    _store_flags(te, flag)
    te.set_defaults(func=_templates_export)
