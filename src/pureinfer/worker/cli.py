"""`pureinfer worker`, `pureinfer demo-models` and `pureinfer sign`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from pureinfer.logging import PREVIEW_CHARS
    from pureinfer.settings import (
        DEFAULT_IMAGE_MODEL,
        DEFAULT_TEXT_MODEL_CPU,
        DEFAULT_TEXT_MODEL_CUDA,
        SETTINGS_EPILOG,
        Role,
        WorkerSettings,
        add_setting_flag,
    )

    def flag(group: Any, *flags: str, help: str, **kwargs: Any) -> None:
        add_setting_flag(group, WorkerSettings, *flags, help=help, **kwargs)

    w = sub.add_parser(
        "worker", help="run a worker: chat, prompt enhancement and text generation, SDXL images",
        description="A worker runs exactly the prompts it is given. It serves the seed's /chat, /enhance\n"
                    "and /generate, an OpenAI-compatible /v1 API, /health, /status, /worker/info and\n"
                    "/metrics. `pureinfer worker --demo --role all` serves tiny demo models, offline.",
        epilog=SETTINGS_EPILOG)
    model = w.add_argument_group("model")
    flag(model, "--role", choices=[r.value for r in Role],
         help="what to serve: chat (text endpoints), image (SDXL images) or all")
    flag(model, "--demo", action="store_true",
         help="serve tiny random-weight models, built offline into CACHE_DIR/demo-models on first use")
    flag(model, "--text-model", action="append", dest="text_models", metavar="[ALIAS=]PATH_OR_HUB_ID",
         help="a save_pretrained folder or Hugging Face hub id, served as ALIAS; repeatable, the first is "
              f"the default model (default: {DEFAULT_TEXT_MODEL_CUDA} on CUDA, {DEFAULT_TEXT_MODEL_CPU} on "
              "CPU, the demo model with --demo)")
    flag(model, "--image-model", metavar="PATH_OR_HUB_ID_OR_SAFETENSORS",
         help=f"the SDXL model (default: {DEFAULT_IMAGE_MODEL}, the demo model with --demo)")
    flag(model, "--device", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda when available, else cpu)")
    flag(model, "--dtype", choices=["auto", "float32", "float16", "bfloat16"],
         help="weights' dtype; auto is bfloat16 for text and float16 for images on CUDA, float32 on CPU")
    flag(model, "--cache-dir", type=Path,
         help="where demo models are built and, unless --storage-dir, images are stored")

    listen = w.add_argument_group("listening")
    flag(listen, "--host", help="address to listen on; a non-loopback one needs --api-key or --insecure")
    flag(listen, "--port", type=int, help="TCP port")

    security = w.add_argument_group("security")
    flag(security, "--api-key", action="append", dest="api_keys", metavar="KEY",
         help="a key callers must send (Authorization: Bearer KEY or X-API-Key); repeatable; "
              "/health/live and /health/ready stay open")
    flag(security, "--signing-secret", metavar="SECRET",
         help="also require X-Timestamp + X-Signature, an HMAC-SHA256 of the request with SECRET "
              "(`pureinfer sign`) (default: none, signatures not required)")
    flag(security, "--insecure", action="store_true",
         help="allow listening on a non-loopback address without an API key")

    limits = w.add_argument_group("serving limits")
    flag(limits, "--max-tokens-limit", type=int,
         help="the largest max_tokens a request may ask for (larger: TOKEN_LIMIT_EXCEEDED)")
    flag(limits, "--request-timeout-s", type=float,
         help="seconds a request may take; then its work is cancelled (WORKER_TIMEOUT)")
    flag(limits, "--max-body-bytes", type=int, help="larger request bodies are refused with 413")
    flag(limits, "--max-running-requests", type=int, help="requests the engine runs at once")
    flag(limits, "--max-queued-requests", type=int,
         help="requests waiting for a running slot; past that, 503 WORKER_OVERLOADED")
    flag(limits, "--drain-timeout-s", type=float,
         help="on SIGTERM, seconds in-flight requests get to finish (new ones are refused)")

    device = w.add_argument_group("device memory and speed")
    flag(device, "--gpu-memory-fraction", type=float,
         help="share of the GPU's memory this worker plans with: weights, the image engine's measured peak "
              "and the text KV cache must fit in it")
    flag(device, "--prefill-chunk-tokens", type=int,
         help="prompt tokens per text step: smaller keeps inter-token latency low while prompts arrive, "
              "larger prefills faster (default: 256 on the CPU, 512 on CUDA)")
    flag(device, "--image-exact-batching", action=argparse.BooleanOptionalAction,
         help="one UNet call per image, so pixels never depend on the batch (default: on for the CPU, "
              "off for CUDA, where a batch differs from a lone image by rounding only)")
    flag(device, "--image-vae-fp16-fix", metavar="PATH_OR_HUB_ID",
         help="an fp16-safe SDXL VAE (e.g. madebyollin/sdxl-vae-fp16-fix) that decodes in fp16 "
              "(default: none; the stock VAE decodes in fp32)")
    flag(device, "--image-channels-last", action="store_true",
         help="run the UNet and VAE in channels-last memory format (measure on your GPU)")
    flag(device, "--image-compile", action="store_true",
         help="torch.compile the UNet at start-up (minutes of warm-up)")

    storage = w.add_argument_group("image storage")
    flag(storage, "--storage", choices=["local", "s3"],
         help="where generated images go: a local directory served at /files/..., or S3-compatible storage")
    flag(storage, "--storage-dir", type=Path, help="the local directory (default: CACHE_DIR/files)")
    flag(storage, "--public-base-url", metavar="URL",
         help="base of image URLs in responses (default: local files at the URL the request came "
              "in on; S3 objects presigned)")
    flag(storage, "--s3-bucket", help="bucket for --storage s3 (default: none; required with --storage s3)")
    flag(storage, "--s3-prefix", help="key prefix inside the bucket")
    flag(storage, "--s3-endpoint-url", metavar="URL",
         help="endpoint of an S3-compatible store such as MinIO (default: AWS's)")

    flag(device, "--threads", type=int,
         help="torch intra-op CPU threads; workers sharing a host should divide its cores (a warning says "
              "when they add up to more) (default: the CPUs of this process's affinity mask)")

    queue = w.add_argument_group("queue mode")
    flag(queue, "--queue", metavar="redis://HOST:PORT/DB",
         help="also pull jobs from the gateway's Redis Streams queue (default: none, HTTP only)")
    flag(queue, "--no-http", action="store_true", help="with --queue: serve no HTTP at all (behind NAT)")
    flag(queue, "--queue-prefix", help="Redis key prefix: the gateway's --queue-prefix")
    flag(queue, "--queue-concurrency", type=int,
         help="jobs this worker runs at once (each takes an admission permit, as an HTTP request does)")
    flag(queue, "--queue-visibility-timeout-s", type=float,
         help="a job whose worker is silent this long is re-delivered: the gateway's value")
    flag(queue, "--queue-max-attempts", type=int,
         help="deliveries of one job before it goes to the dead letters: the gateway's value")

    registration = w.add_argument_group("gateway registration")
    flag(registration, "--gateway", dest="gateway_url", metavar="URL",
         help="register with the gateway at URL and send it heartbeats (default: no registration)")
    flag(registration, "--gateway-secret", metavar="SECRET",
         help="signs the registration and heartbeats: the gateway's --registration-secret (default: none)")
    flag(registration, "--worker-url", metavar="URL",
         help="the URL the gateway should call this worker at (default: http://HOST:PORT)")

    logs = w.add_argument_group("logging")
    flag(logs, "--log-level", help="DEBUG, INFO, WARNING or ERROR; logs are JSON lines on stderr")
    flag(logs, "--log-prompts", choices=["none", "preview", "full"],
         help=f"how much of a prompt the logs show (preview: its first {PREVIEW_CHARS} characters)")
    w.set_defaults(func=run_worker)

    d = sub.add_parser("demo-models", help="build the tiny random-weight demo models offline",
                       description="Build random-weight models offline into DIR/text and DIR/image (real\n"
                                   "architectures, no download): what `worker --demo` serves.")
    d.add_argument("dir", type=Path, help="output folder")
    d.add_argument("--text-shape", default="tiny", choices=["tiny", "qwen2.5-0.5b", "qwen2.5-7b"],
                   help="the text model's architecture: tiny, or the shape of a real Qwen2.5")
    d.add_argument("--image-shape", default="tiny", choices=["tiny", "sdxl"],
                   help="the image model's architecture: tiny, or the full SDXL shape")
    d.add_argument("--only", choices=["text", "image"], help="build one of the two (default: both)")
    d.set_defaults(func=run_demo_models)

    s = sub.add_parser("sign", help="print the signature headers for a request (HMAC-SHA256)",
                       description="Print the X-Timestamp and X-Signature headers that authenticate one\n"
                                   "request to a worker started with --signing-secret.")
    s.add_argument("--secret", default=os.environ.get("PUREINFER_SIGNING_SECRET"),
                   help="the worker's signing secret (default: $PUREINFER_SIGNING_SECRET)")
    s.add_argument("--method", default="POST", help="HTTP method")
    s.add_argument("--path", required=True, help="the request target: the URL path, with ?QUERY when there is one (signed exactly as sent), e.g. /chat")
    s.add_argument("--body", default="-", help="body file, or - for standard input")
    s.add_argument("--timestamp", type=int, help="Unix seconds (default: now, with microseconds)")
    s.add_argument("--curl", action="store_true", help="print as curl -H arguments")
    s.set_defaults(func=run_sign)


def _overrides(args: argparse.Namespace, skip: tuple[str, ...] = ("command", "func")) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in skip and v is not None}


def run_worker(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from pureinfer.logging import configure_logging
    from pureinfer.settings import WorkerSettings

    try:
        settings = WorkerSettings(**_overrides(args))
    except ValidationError as exc:
        for err in exc.errors():
            print(f"pureinfer worker: {err['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if settings.no_http:
        return asyncio.run(serve_queue_only(settings))
    return serve_worker(settings)


async def serve_queue_only(settings: Any) -> int:
    """`--queue ... --no-http`: the app's lifespan (models, queue mode) without a listening
    socket. SIGTERM drains as in serve_worker: 0 when the running jobs finished, 1 when some were
    handed back (or an engine died)."""
    from pureinfer.worker.app import create_app, drain

    stop = asyncio.Event()
    failed = False

    def fatal() -> None:
        nonlocal failed
        failed = True
        stop.set()

    app = create_app(settings, on_fatal=fatal)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    left = 0
    async with app.router.lifespan_context(app):
        await stop.wait()
        if not failed:
            left = await drain(app.state.runtime, settings.drain_timeout_s)
    return 1 if failed or left else 0


def serve_worker(settings: Any) -> int:
    """Run uvicorn with our SIGTERM: drain first (ready=false, new work 503), then exit: 0 when
    everything in flight finished, 1 when the drain timed out and requests were cut (or an
    engine died)."""
    import uvicorn

    from pureinfer.worker.app import create_app, drain

    exit_code = 0
    server: uvicorn.Server | None = None

    def fatal() -> None:
        nonlocal exit_code
        exit_code = 1
        if server is not None:
            server.should_exit = True

    app = create_app(settings, on_fatal=fatal)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            timeout_graceful_shutdown=5, lifespan="on")

    class DrainingServer(uvicorn.Server):
        draining = False

        def handle_exit(self, sig: int, frame: Any) -> None:
            if sig == signal.SIGTERM and not self.draining and self.started:
                self.draining = True
                asyncio.get_event_loop().create_task(self._drain_then_exit())
                return
            super().handle_exit(sig, frame)

        async def _drain_then_exit(self) -> None:
            nonlocal exit_code
            if await drain(app.state.runtime, settings.drain_timeout_s):
                exit_code = 1
            self.should_exit = True

    server = DrainingServer(config)
    server.run()
    if app.state.runtime.lifecycle.state.value == "failed":
        exit_code = 1
    return exit_code


def run_demo_models(args: argparse.Namespace) -> int:
    from pureinfer.engines.demo.build import ensure_demo_models

    ensure_demo_models(args.dir, text=args.only in (None, "text"), image=args.only in (None, "image"),
                       text_shape=args.text_shape, image_shape=args.image_shape)
    print(json.dumps({"text": str(args.dir / "text") if args.only in (None, "text") else None,
                      "image": str(args.dir / "image") if args.only in (None, "image") else None}))
    return 0


def run_sign(args: argparse.Namespace) -> int:
    from pureinfer.security import sign

    if not args.secret:
        print("pureinfer sign: --secret or PUREINFER_SIGNING_SECRET is required", file=sys.stderr)
        return 2
    body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    headers = sign(args.secret, args.method, args.path, body, args.timestamp)
    if args.curl:
        print(" ".join(f"-H '{k}: {v}'" for k, v in headers.items()))
    else:
        print(json.dumps(headers))
    return 0
