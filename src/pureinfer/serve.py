"""`pureinfer serve`: the whole product in one process: the gateway (with the console at /ui), a
chat worker and an image worker.

The workers are the same worker apps as `pureinfer worker`, each listening on its own loopback
port with its own key and signing secret, and they register with the gateway through the signed
registration route like any remote worker; the gateway calls them over HTTP. So there is one code
path for routing, signing, retries, audit and the console, whether the workers are here or
elsewhere (the cost is a loopback hop per request, well under a millisecond).

Keys: the admin key (or `--admin-key`), the caller key, the workers' key and the two secrets are
generated on the first start and kept in `CACHE_DIR/serve-keys.json` (mode 0600), so a restart
keeps them (the browser's session cookie still dies with the process: sessions live in memory).

The starter templates are imported at every start (idempotent); with `--demo` the tiny demo
models are built offline into the cache directory on first use. Progress goes to standard
output as plain lines; logs are the usual JSON lines on standard error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import uvicorn

KEYS_FILE = "serve-keys.json"


@dataclass(frozen=True)
class ServeKeys:
    admin_key: str
    api_key: str
    worker_api_key: str
    worker_signing_secret: str
    registration_secret: str


def load_or_create_keys(cache_dir: Path, admin_key: str | None = None) -> ServeKeys:
    """The keys of `CACHE_DIR/serve-keys.json`, made (mode 0600, never readable by others, even
    for an instant) on the first start. `admin_key` given on the command line wins and is kept."""
    path = cache_dir / KEYS_FILE
    stored: dict[str, str] = {}
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
    fields = ServeKeys.__dataclass_fields__
    values = {name: stored.get(name) or secrets.token_urlsafe(24) for name in fields}
    if admin_key:
        values["admin_key"] = admin_key
    keys = ServeKeys(**values)
    if values != stored:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(keys), f, indent=1)
        tmp.replace(path)
    os.chmod(path, 0o600)  # a file from an older start, or copied in, is tightened too
    return keys


def bound_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: one the OS picks, so there is no race for a free
    port). Bound before anything loads, so a port in use is said at once, not after the models."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals to `serve` (several servers share one loop; each
    would otherwise take SIGTERM for itself and re-raise it on the way out)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Plan:
    """What `serve` starts: the gateway's and each worker's settings, and their sockets."""

    gateway: Any  # GatewaySettings
    workers: dict[str, Any]  # name -> WorkerSettings
    sockets: dict[str, socket.socket]
    keys: ServeKeys
    keys_path: Path

    @property
    def console_url(self) -> str:
        host = self.gateway.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{shown}:{self.gateway.port}/ui"


def plan(args: dict[str, Any]) -> Plan:
    """Settings for the gateway and the two workers from the command's flags."""
    from pureinfer.gateway.settings import GatewaySettings
    from pureinfer.settings import WorkerSettings

    common = {k: args[k] for k in ("cache_dir", "log_level", "log_prompts") if args.get(k) is not None}
    probe = GatewaySettings(**common, insecure=True)  # the cache dir the others will use
    keys = load_or_create_keys(probe.cache_dir, args.get("admin_key"))
    gateway = GatewaySettings(
        **common, **{k: args[k] for k in ("host", "port", "database_url") if args.get(k) is not None},
        api_keys=[keys.api_key, *(args.get("api_keys") or [])], admin_keys=[keys.admin_key],
        worker_api_key=keys.worker_api_key, worker_signing_secret=keys.worker_signing_secret,
        registration_secret=keys.registration_secret,
        default_template=args.get("default_template") or "generic_enhance_default")
    model_flags = {k: args[k] for k in ("demo", "text_models", "image_model", "device", "dtype")
                   if args.get(k) not in (None, [])}
    sockets = {"gateway": bound_socket(gateway.host, gateway.port)}
    sockets |= {name: bound_socket("127.0.0.1", 0) for name in ("chat", "image")}
    workers = {}
    for name in ("chat", "image"):
        port = sockets[name].getsockname()[1]
        workers[name] = WorkerSettings(
            **common, **model_flags, role=name, host="127.0.0.1", port=port,
            worker_url=f"http://127.0.0.1:{port}", api_keys=[keys.worker_api_key],
            signing_secret=keys.worker_signing_secret, gateway_url=f"http://127.0.0.1:{gateway.port}",
            gateway_secret=keys.registration_secret, heartbeat_s=5.0)
    return Plan(gateway, workers, sockets, keys, probe.cache_dir / KEYS_FILE)


def say(line: str) -> None:
    print(f"pureinfer serve: {line}", flush=True)


async def _progress(plan: Plan, apps: dict[str, Any], gateway_app: Any, stop: asyncio.Event) -> None:
    """Tell the person at the terminal what start-up is doing until everything is ready."""
    from pureinfer.worker.state import WorkerState

    started = time.monotonic()
    announced: set[str] = set()
    next_note = 10.0
    while not stop.is_set():
        for name, app in apps.items():
            state = app.state.runtime.lifecycle.state
            if name not in announced and state == WorkerState.READY:
                announced.add(name)
                say(f"{name} worker ready ({time.monotonic() - started:.1f} s)")
            elif state == WorkerState.FAILED and f"{name}-failed" not in announced:
                announced.add(f"{name}-failed")
                say(f"{name} worker FAILED to load its models; see the log on standard error")
        gw = getattr(gateway_app.state, "gateway", None)
        healthy = sum(w.healthy for w in gw.registry.workers.values()) if gw is not None else 0
        if len(announced & set(apps)) == len(apps) and healthy >= len(apps):
            k = plan.keys
            say(f"ready in {time.monotonic() - started:.1f} s\n\n"
                f"  console:   {plan.console_url}\n"
                f"  admin key: {k.admin_key}\n"
                f"  API key:   {k.api_key}   (for /chat, /enhance-prompt: Authorization: Bearer KEY)\n"
                f"  keys kept in {plan.keys_path} (mode 0600)\n")
            return
        elapsed = time.monotonic() - started
        if elapsed >= next_note:
            waiting = [n for n in apps if n not in announced]
            say(f"still loading: {', '.join(waiting) or 'worker registration'} ({elapsed:.0f} s)")
            next_note += 10.0
        await asyncio.sleep(0.2)


async def run(plan: Plan) -> int:
    from pureinfer.console import attach_console
    from pureinfer.gateway.app import create_app as create_gateway
    from pureinfer.worker.app import create_app as create_worker

    await asyncio.to_thread(_import_starter, plan.gateway)
    gateway_app = create_gateway(plan.gateway)
    attach_console(gateway_app)
    apps = {name: create_worker(settings) for name, settings in plan.workers.items()}

    def config(app: Any, host: str, port: int) -> uvicorn.Config:
        # log_config=None: uvicorn's own lines go through our JSON handler (as `pureinfer gateway`).
        return uvicorn.Config(app, host=host, port=port, log_config=None, log_level="warning",
                              access_log=False, lifespan="on", timeout_graceful_shutdown=5)

    gateway_server = QuietServer(config(gateway_app, plan.gateway.host, plan.gateway.port))
    worker_servers = {name: QuietServer(config(app, "127.0.0.1", plan.workers[name].port))
                      for name, app in apps.items()}
    servers = [gateway_server, *worker_servers.values()]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def shut_down() -> None:
        say("stopping")
        stop.set()
        for s in servers:
            s.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shut_down)

    if plan.workers["chat"].demo:
        say(f"demo models: {plan.workers['chat'].demo_dir} (built offline on the first start)")
    say(f"starting the gateway at http://{plan.gateway.host}:{plan.gateway.port} and two workers on loopback "
        f"(chat :{plan.workers['chat'].port}, image :{plan.workers['image'].port}); loading models ...")
    # Both workers run in this process, and torch's intra-op threads belong to the process: they
    # share one pool (the CPUs of the affinity mask) rather than divide the cores.
    threads = plan.workers["chat"].effective_threads()
    say(f"the two workers share this process's {threads} torch thread{'s' if threads != 1 else ''} "
        f"(torch threads are per process; to divide the cores, run `pureinfer worker --threads N` processes)")
    async def serve(server: uvicorn.Server, sock: socket.socket) -> None:
        # uvicorn ends a server that cannot start with sys.exit(1): here that is one server of
        # three ending, which stops the others (below), not an exception through the loop.
        with contextlib.suppress(SystemExit):
            await server.serve(sockets=[sock])

    tasks = [asyncio.create_task(serve(gateway_server, plan.sockets["gateway"]), name="gateway")]
    tasks += [asyncio.create_task(serve(s, plan.sockets[name]), name=f"{name}-worker")
              for name, s in worker_servers.items()]
    progress = asyncio.create_task(_progress(plan, apps, gateway_app, stop))
    exit_code = 0
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            # One server ended by itself (a port in use, a model that failed to load): stop all.
            exit_code = 1
            say(f"{', '.join(t.get_name() for t in done)} stopped; stopping everything")
            shut_down()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        progress.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await progress
    failed = [n for n, a in apps.items() if a.state.runtime.lifecycle.state.value == "failed"]
    return 1 if failed or exit_code else 0


def _import_starter(settings: Any) -> None:
    from pureinfer.db import open_store
    from pureinfer.gateway.cli import STARTER
    from pureinfer.gateway.templates.service import import_yaml

    store = open_store(settings.effective_database_url)
    try:
        counts = import_yaml(store, STARTER.read_text(encoding="utf-8"))
    finally:
        store.dispose()
    if counts["created"] or counts["new_versions"]:
        say(f"starter templates: {counts['created']} created, {counts['new_versions']} new versions")


def run_serve(args: Any) -> int:
    from pydantic import ValidationError

    from pureinfer.logging import configure_logging

    flags = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    try:
        p = plan(flags)
    except (ValidationError, ValueError) as exc:
        print(f"pureinfer serve: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the gateway's port is taken, or the address is not ours
        print(f"pureinfer serve: cannot listen on {flags.get('host') or '127.0.0.1'}:"
              f"{flags.get('port') or 8080}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    configure_logging(p.gateway.log_level)
    return asyncio.run(run(p))


def register(sub: Any) -> None:
    from pureinfer.gateway.settings import GatewaySettings
    from pureinfer.settings import SETTINGS_EPILOG, WorkerSettings, add_setting_flag

    s = sub.add_parser(
        "serve", help="run everything in one process: the gateway, its console at /ui, a chat and an image worker",
        description="The whole product in one process: the gateway with the web console at /ui, a chat\n"
                    "worker and an image worker (on loopback, registered with the gateway like any\n"
                    "worker). Keys are generated on the first start and kept in CACHE_DIR/serve-keys.json.\n"
                    "`pureinfer serve --demo` runs offline on tiny demo models.",
        epilog=SETTINGS_EPILOG)

    def gflag(group: Any, *flags: str, help: str, **kwargs: Any) -> None:
        add_setting_flag(group, GatewaySettings, *flags, help=help, **kwargs)

    def wflag(group: Any, *flags: str, help: str, **kwargs: Any) -> None:
        add_setting_flag(group, WorkerSettings, *flags, help=help, **kwargs)

    model = s.add_argument_group("models (as `pureinfer worker`)")
    wflag(model, "--demo", action="store_true",
          help="serve tiny random-weight models, built offline into CACHE_DIR/demo-models on first use")
    wflag(model, "--text-model", action="append", dest="text_models", metavar="[ALIAS=]PATH_OR_HUB_ID",
          help="a save_pretrained folder or hub id for the chat worker, served as ALIAS; repeatable "
               "(default: as `pureinfer worker`)")
    wflag(model, "--image-model", metavar="PATH_OR_HUB_ID_OR_SAFETENSORS",
          help="the SDXL model of the image worker (default: as `pureinfer worker`)")
    wflag(model, "--device", help="torch device (default: cuda when available, else cpu)")
    wflag(model, "--dtype", choices=["auto", "float32", "float16", "bfloat16"], help="weights' dtype")

    listen = s.add_argument_group("listening")
    gflag(listen, "--host", help="the gateway's address; a non-loopback one is protected by the generated keys")
    gflag(listen, "--port", type=int, help="the gateway's (and console's) TCP port")

    security = s.add_argument_group("security")
    security.add_argument("--admin-key", metavar="KEY", default=os.environ.get("PUREINFER_ADMIN_KEY"),
                          help="the admin key to sign in to the console with (default: generated on the "
                               "first start and kept in CACHE_DIR/serve-keys.json) (environment: PUREINFER_ADMIN_KEY)")
    gflag(security, "--api-key", dest="api_keys", action="append", metavar="KEY",
          help="another caller key for /chat and /enhance-prompt, besides the generated one (default: none)")

    storage = s.add_argument_group("storage")
    gflag(storage, "--cache-dir", type=Path, help="demo models, the sqlite store, images and the kept keys")
    gflag(storage, "--database-url", metavar="URL",
          help="the gateway's store (default: a sqlite file CACHE_DIR/gateway.db)")
    gflag(storage, "--default-template", metavar="NAME",
          help="the template of the last fallback level (default: generic_enhance_default, a starter template)")

    logs = s.add_argument_group("logging")
    gflag(logs, "--log-level", help="DEBUG, INFO, WARNING or ERROR; logs are JSON lines on stderr")
    gflag(logs, "--log-prompts", choices=["none", "preview", "full"], help="how much of a prompt the logs show")
    s.set_defaults(func=run_serve)
