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
    w = sub.add_parser("worker", help="Run a worker (chat, image or all)")
    w.add_argument("--role", choices=["chat", "image", "all"])
    w.add_argument("--demo", action="store_true", default=None,
                   help="Serve tiny random-weight models built locally (offline)")
    w.add_argument("--text-model", action="append", dest="text_models", metavar="[ALIAS=]PATH_OR_HUB_ID",
                   help="Repeatable; the first is the default model")
    w.add_argument("--image-model", metavar="PATH_OR_HUB_ID_OR_SAFETENSORS")
    w.add_argument("--host")
    w.add_argument("--port", type=int)
    w.add_argument("--api-key", action="append", dest="api_keys", metavar="KEY", help="Repeatable")
    w.add_argument("--signing-secret")
    w.add_argument("--insecure", action="store_true", default=None,
                   help="Allow listening on a non-loopback address without an API key")
    w.add_argument("--device")
    w.add_argument("--dtype", choices=["auto", "float32", "float16", "bfloat16"])
    w.add_argument("--cache-dir", type=Path)
    w.add_argument("--max-tokens-limit", type=int)
    w.add_argument("--request-timeout-s", type=float)
    w.add_argument("--max-body-bytes", type=int)
    w.add_argument("--max-running-requests", type=int)
    w.add_argument("--max-queued-requests", type=int)
    w.add_argument("--drain-timeout-s", type=float)
    w.add_argument("--gpu-memory-fraction", type=float,
                   help="Share of the GPU's memory to plan with (weights, image peak, text KV cache); default 0.9")
    w.add_argument("--prefill-chunk-tokens", type=int,
                   help="Prompt tokens per text step (default 256 CPU, 512 CUDA): smaller keeps inter-token "
                        "latency low while prompts arrive, larger prefills faster")
    w.add_argument("--image-exact-batching", action=argparse.BooleanOptionalAction, default=None,
                   help="One UNet call per image so pixels never depend on the batch (default: on for CPU, "
                        "off for CUDA)")
    w.add_argument("--image-vae-fp16-fix", metavar="PATH_OR_HUB_ID",
                   help="An fp16-safe SDXL VAE (e.g. madebyollin/sdxl-vae-fp16-fix) to decode in fp16")
    w.add_argument("--image-channels-last", action="store_true", default=None,
                   help="Run the UNet and VAE in channels-last memory format")
    w.add_argument("--image-compile", action="store_true", default=None,
                   help="torch.compile the UNet at start-up")
    w.add_argument("--log-prompts", choices=["none", "preview", "full"])
    w.add_argument("--log-level")
    w.add_argument("--storage", choices=["local", "s3"])
    w.add_argument("--storage-dir", type=Path)
    w.add_argument("--public-base-url")
    w.add_argument("--s3-bucket")
    w.add_argument("--s3-prefix")
    w.add_argument("--s3-endpoint-url")
    w.add_argument("--gateway", dest="gateway_url", metavar="URL", help="Register with this gateway")
    w.add_argument("--gateway-secret")
    w.add_argument("--worker-url", help="The URL the gateway should use to reach this worker")
    w.set_defaults(func=run_worker)

    d = sub.add_parser("demo-models", help="Build tiny random-weight models offline into DIR/text and DIR/image")
    d.add_argument("dir", type=Path)
    d.add_argument("--text-shape", default="tiny", choices=["tiny", "qwen2.5-0.5b", "qwen2.5-7b"])
    d.add_argument("--image-shape", default="tiny", choices=["tiny", "sdxl"])
    d.add_argument("--only", choices=["text", "image"])
    d.set_defaults(func=run_demo_models)

    s = sub.add_parser("sign", help="Print the signature headers for a request (HMAC-SHA256)")
    s.add_argument("--secret", default=os.environ.get("PUREINFER_SIGNING_SECRET"))
    s.add_argument("--method", default="POST")
    s.add_argument("--path", required=True)
    s.add_argument("--body", default="-", help="Body file, or - for standard input")
    s.add_argument("--timestamp", type=int, help="Unix seconds (default: now, with microseconds)")
    s.add_argument("--curl", action="store_true", help="Print as curl -H arguments")
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
    return serve_worker(settings)


def serve_worker(settings: Any) -> int:
    """Run uvicorn with our SIGTERM: drain first (ready=false, new work 503), then exit 0."""
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
            await drain(app.state.runtime, settings.drain_timeout_s)
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
