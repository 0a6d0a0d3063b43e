"""A bounded load generator on loopback: `clients` concurrent callers for `duration_s`, each sending
one request after the other, a mix of streaming and non-streaming calls (worker: /chat,
/v1/chat/completions, /enhance; gateway: /chat, /enhance-prompt), authenticated as real callers.

Allowed answers: success (a stream must end without an error event), and the designed refusal,
503 with Retry-After and the coded envelope (WORKER_OVERLOADED and its kin). Anything else is
counted as unexpected, with samples. Latencies are per request (a stream: until its last byte).
Used by tests/reliability/test_load.py (seconds, statuses and slots only) and scripts/load.py
(minutes, with RSS and the figures).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from pureinfer.security import sign


@dataclass
class Call:
    path: str
    payload: dict[str, Any]
    stream: bool


WORKER_MIX = [
    Call("/chat", {"messages": [{"role": "user", "content": "A lighthouse at dusk"}], "max_tokens": 16}, False),
    Call("/chat", {"messages": [{"role": "user", "content": "A fox in the snow"}], "max_tokens": 16,
                   "stream": True}, True),
    Call("/v1/chat/completions", {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 12,
                                  "stream": True}, True),
    Call("/enhance", {"messages": [{"role": "system", "content": "Enhance prompts."},
                                   {"role": "user", "content": "a castle"}], "max_tokens": 12}, False),
]
GATEWAY_MIX = [
    Call("/chat", {"message": "A lighthouse at dusk", "max_tokens": 16}, False),
    Call("/chat", {"message": "A fox in the snow", "max_tokens": 16, "stream": True}, True),
    Call("/enhance-prompt", {"prompt": "a castle on a hill", "target_model": "sdxl"}, False),
]


@dataclass
class LoadReport:
    target: str
    clients: int
    duration_s: float
    requests: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "503 WORKER_OVERLOADED", ...
    unexpected: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # successes only
    streams: int = 0
    elapsed_s: float = 0.0
    rss: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

        ok = sum(v for k, v in self.statuses.items() if k.startswith("2"))
        return {"target": self.target, "clients": self.clients, "duration_s": self.duration_s,
                "elapsed_s": round(self.elapsed_s, 1), "requests": self.requests, "succeeded": ok,
                "streams": self.streams, "statuses": dict(self.statuses),
                "requests_per_s": round(self.requests / self.elapsed_s, 2) if self.elapsed_s else None,
                "succeeded_per_s": round(ok / self.elapsed_s, 2) if self.elapsed_s else None,
                "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "max": lat[-1] if lat else None},
                "unexpected": len(self.unexpected), "unexpected_samples": self.unexpected[:10], "rss": self.rss}


def _stream_error(body: str) -> str | None:
    """The error an SSE stream ended with, if any (an event carrying an error_code)."""
    for line in body.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data and data != "[DONE]" and '"error_code"' in data:
                try:
                    event = json.loads(data)
                except ValueError:
                    return data[:200]
                found = event.get("error_code") or (event.get("error") or {}).get("code")
                if found:
                    return str(found)
    return None


async def run_load(target: str, base_url: str, mix: list[Call], *, clients: int, duration_s: float,
                   key: str | None, secret: str | None = None, timeout_s: float = 300,
                   on_tick: Callable[[float], None] | None = None) -> LoadReport:
    """Run the load; `on_tick(elapsed)` is called about once a second (the script samples RSS)."""
    report = LoadReport(target, clients, duration_s)
    # Idle connections expire before uvicorn's keep-alive timeout (5 s), as a careful client's do:
    # otherwise a request sent just as the server closes an idle connection fails to read.
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4, keepalive_expiry=2.0)
    start = time.monotonic()
    deadline = start + duration_s
    counter = itertools.count()
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits, trust_env=False) as http:

        async def one(call: Call) -> None:
            body = json.dumps(call.payload).encode()
            headers = {"Content-Type": "application/json"}
            if key:
                headers["Authorization"] = f"Bearer {key}"
            if secret:
                headers |= sign(secret, "POST", call.path, body)
            t0 = time.monotonic()
            try:
                async with http.stream("POST", call.path, content=body, headers=headers) as r:
                    text = (await r.aread()).decode("utf-8", "replace")
            except httpx.HTTPError as exc:
                report.statuses[type(exc).__name__] += 1
                report.unexpected.append(f"{call.path}: {type(exc).__name__}: {exc}")
                return
            ms = (time.monotonic() - t0) * 1000
            report.requests += 1
            if r.status_code == 200:
                error = _stream_error(text) if call.stream else None
                if error:
                    report.statuses[f"200 stream error {error}"] += 1
                    report.unexpected.append(f"{call.path}: stream ended with {error}")
                    return
                report.statuses["200"] += 1
                report.streams += call.stream
                report.latencies_ms.append(ms)
                return
            code = None
            with contextlib.suppress(ValueError, AttributeError):
                code = json.loads(text).get("error_code")
            report.statuses[f"{r.status_code} {code}"] += 1
            if not (r.status_code == 503 and code and r.headers.get("retry-after")):
                report.unexpected.append(f"{call.path}: {r.status_code} {text[:200]}")

        async def client() -> None:
            while time.monotonic() < deadline:
                await one(mix[next(counter) % len(mix)])

        async def ticker() -> None:
            while time.monotonic() < deadline:
                if on_tick is not None:
                    on_tick(time.monotonic() - start)
                await asyncio.sleep(1.0)

        await asyncio.gather(ticker(), *(client() for _ in range(clients)))
    report.elapsed_s = time.monotonic() - start
    return report
