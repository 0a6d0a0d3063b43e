"""`bench text`'s HTTP side: the worker app on uvicorn with the bench's engine injected, and the
load generator (run in a child process: `python -m pureinfer.bench.text_http SPEC`).

Over HTTP the first token is the first SSE event that carries generated text: the engine never
samples an id its tokenizer cannot decode (engines/text/engine.py), so with the demo models the
first event comes with the first token; a token that ends inside a multi-byte character can
still delay it by one token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

from pureinfer.bench.text_runners import Timing, summarize


async def run_http_subprocess(base_url: str, prompt: str, *, concurrency: int, rounds: int,
                              body: dict[str, Any]) -> dict[str, Any]:
    """`run_http` in a child process: the load generator must not share the worker's GIL (real
    clients are other processes, usually other machines)."""
    spec = json.dumps({"base_url": base_url, "prompt": prompt, "concurrency": concurrency, "rounds": rounds,
                       "body": body})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pureinfer.bench.text_http", spec,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the HTTP load generator failed: {err.decode()[-2000:]}")
    return json.loads(out)


async def run_http(base_url: str, prompt: str, *, concurrency: int, rounds: int,
                   body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    timings: list[Timing] = []
    start = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(3600.0), limits=limits) as http:

        async def client(i: int) -> None:
            for _ in range(rounds):
                t = Timing(time.perf_counter() - start)
                timings.append(t)
                async with http.stream("POST", "/generate", json={"prompt": prompt, **body, "stream": True}) as resp:
                    if resp.status_code != 200:
                        raise RuntimeError(f"/generate answered {resp.status_code}: {(await resp.aread())[:300]!r}")
                    async for line in resp.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            break
                        event = json.loads(data)
                        if "error" in event:
                            raise RuntimeError(f"/generate stream error: {event['error']}")
                        if "tokens_generated" in event:
                            t.n_tokens = int(event["tokens_generated"])
                        elif event.get("text") and t.first_token is None:
                            t.first_token = time.perf_counter() - start
                t.finished = time.perf_counter() - start

        await asyncio.gather(*(client(i) for i in range(concurrency)))
    return summarize(timings, time.perf_counter() - start)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_worker(engine: Any, *, max_running: int, max_queued: int, max_tokens: int,
                 device: str, dtype: str) -> Iterator[str]:
    """The real worker app with `engine` injected, on uvicorn in a background thread."""
    import uvicorn

    from pureinfer.settings import Role, WorkerSettings
    from pureinfer.worker.app import create_app

    port = _free_port()
    settings = WorkerSettings(
        role=Role.CHAT, host="127.0.0.1", port=port, text_models=[f"bench={engine.model_id}"],
        device=device, dtype=cast(Any, dtype),
        max_running_requests=max_running, max_queued_requests=max_queued,
        max_tokens_limit=max(max_tokens, 2000), request_timeout_s=3600.0, log_prompts="none", log_level="WARNING",
    )
    app = create_app(settings, text_engines={"bench": engine})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name="bench-worker", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the worker app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)




if __name__ == "__main__" and len(sys.argv) == 2:
    _spec = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(run_http(_spec["base_url"], _spec["prompt"], concurrency=_spec["concurrency"],
                                          rounds=_spec["rounds"], body=_spec["body"]))))
