"""Property-based fuzzing of a running app from its own OpenAPI document (schemathesis makes the
requests: valid ones and, in its negative mode, ones that break the schema on purpose).

Generic over the document: every operation the app serves is fuzzed, so a route added later is
fuzzed without a change here. Each request is sent as a real HTTP request (httpx, loopback) and
authenticated as the app's callers do: a Bearer key and, when the app has one, an HMAC signature
over the exact method, path, query and body bytes sent (`pureinfer.security.sign`) — computed here,
after schemathesis has built the request, so the signature always matches what goes on the wire.

The property checked on every answer: never a 5xx; every 4xx is the coded envelope
(`success: false`, an `error_code`, the `request_id`). Used by tests/reliability/test_fuzz.py
(a bounded number of examples) and scripts/fuzz.py (the full count, JSON figures).
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from pureinfer.security import sign
from pureinfer.worker.generate_dispatch import IMAGE_ONLY, TEXT_ONLY


@dataclass
class FuzzReport:
    app: str
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    operation_seconds: Counter[str] = field(default_factory=Counter)  # time waiting for the app, per operation
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    send_seconds: float = 0.0  # of `seconds`, waiting for the app (the rest generates requests)

    def as_dict(self) -> dict[str, Any]:
        return {"app": self.app, "requests": self.requests, "seconds": round(self.seconds, 1),
                "send_seconds": round(self.send_seconds, 1),
                "status_counts": {str(k): v for k, v in sorted(self.statuses.items())},
                "server_errors": sum(v for k, v in self.statuses.items() if k >= 500),
                "failures": len(self.failures), "failure_samples": self.failures[:20],
                "operations": dict(sorted(self.by_operation.items())),
                "operation_seconds": {k: round(v, 1) for k, v in sorted(self.operation_seconds.items())}}


def envelope_problem(r: httpx.Response) -> str | None:
    """What is wrong with an answer, or None: no 5xx, every 4xx the coded envelope."""
    if r.status_code >= 500:
        return f"{r.status_code}: {r.text[:300]}"
    if r.status_code < 400:
        return None
    try:
        body = r.json()
    except ValueError:
        return f"{r.status_code} without a JSON body: {r.text[:200]!r}"
    if not (isinstance(body, dict) and body.get("success") is False and isinstance(body.get("error_code"), str)
            and body.get("error_code") and isinstance(body.get("request_id"), str) and body.get("request_id")):
        return f"{r.status_code} not the coded envelope: {r.text[:300]}"
    return None


# The one change made to generated requests: diffusion steps are capped, because an image of 150
# steps takes seconds on a CPU and would spend the whole budget on a few valid requests (and meet
# the request deadline, a designed 504, on a loaded machine). Every image-drawing body is capped:
# the native and OpenAI image routes, the gateway's /generate-image, A1111's txt2img (default 50
# steps), a role-`all` worker's /generate when its fields make it an image request, and a job's
# params. A steps value at or under the cap, or an invalid one (a string, a negative), is sent as
# generated. The steps bounds have their own tests.
MAX_FUZZ_STEPS = 4

IMAGE_PATHS = ("/v1/images/generations", "/generate-image", "/sdapi/v1/txt2img")


def _cap_steps(body: dict[str, Any], image_route: bool) -> None:
    steps = body.get("steps")
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > MAX_FUZZ_STEPS:
        body["steps"] = MAX_FUZZ_STEPS
    elif steps is None and image_route:
        body["steps"] = MAX_FUZZ_STEPS  # absent: the default (20, or A1111's 50) would apply


def _draws_an_image(path: str, body: dict[str, Any], image_worker: bool) -> bool:
    if path.endswith(IMAGE_PATHS):
        return True
    if path.endswith("/generate") and not path.endswith("/api/generate"):  # Ollama's is text
        keys = set(body)
        return image_worker or (bool(keys & IMAGE_ONLY) and not keys & TEXT_ONLY)
    return False


def _encode_body(kwargs: dict[str, Any], cap_steps: bool, image_worker: bool) -> tuple[bytes, dict[str, str]]:
    """The exact body bytes (and its content type) of schemathesis's request kwargs."""
    if "json" in kwargs:
        body = kwargs.pop("json")
        if cap_steps and isinstance(body, dict):
            path = httpx.URL(kwargs["url"]).path
            _cap_steps(body, _draws_an_image(path, body, image_worker))
            if path.endswith("/jobs") and isinstance(body.get("params"), dict):
                _cap_steps(body["params"], body.get("type") == "image")
        return json.dumps(body).encode(), {"Content-Type": "application/json"}
    for key in ("content", "data"):
        if key in kwargs:
            value = kwargs.pop(key)
            if isinstance(value, str):
                value = value.encode()
            if isinstance(value, bytes):
                return value, {}
            if isinstance(value, dict):  # form fields
                return httpx.QueryParams(value).__str__().encode(), {
                    "Content-Type": "application/x-www-form-urlencoded"}
            return json.dumps(value).encode(), {"Content-Type": "application/json"}
    return b"", {}


def fuzz_app(name: str, base_url: str, *, examples: int, key: str | None = None, secret: str | None = None,
             timeout_s: float = 600, seed: int | None = None, cap_image_steps: bool = False,
             image_worker: bool = False) -> FuzzReport:
    """Fuzz every operation of the app at `base_url` with about `examples` requests in all,
    split evenly over its operations and over positive and negative generation. `image_worker`:
    the app is a worker of role image, whose /generate always draws."""
    report = FuzzReport(name)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if secret:
        headers |= sign(secret, "GET", "/openapi.json", b"")
    doc = httpx.get(f"{base_url}/openapi.json", headers=headers, timeout=60, trust_env=False).raise_for_status().json()
    schema = schemathesis.openapi.from_dict(doc)
    operations = [result.ok() for result in schema.get_all_operations()]
    per_op = max(1, math.ceil(examples / (2 * len(operations))))
    send_s = 0.0
    start = time.monotonic()
    with httpx.Client(timeout=timeout_s, trust_env=False) as http:

        def send(case: Any) -> None:
            kwargs = case.as_transport_kwargs(base_url=base_url)
            kwargs.pop("cookies", None)
            body, content_headers = _encode_body(kwargs, cap_image_steps, image_worker)
            headers = {k: v for k, v in (kwargs.pop("headers", None) or {}).items()
                       if k.lower() not in ("authorization", "x-api-key", "x-signature", "x-timestamp")}
            headers.update(content_headers)
            if key:
                headers["Authorization"] = f"Bearer {key}"
            request = http.build_request(kwargs["method"], kwargs["url"], params=kwargs.get("params"),
                                         headers=headers, content=body)
            if secret:
                # What the app verifies: the decoded path (the ASGI scope's), the query as sent.
                path, query = request.url.path, request.url.query.decode("ascii")
                request.headers.update(sign(secret, request.method, f"{path}?{query}" if query else path, body))
            label = f"{case.operation.method.upper()} {case.operation.path}"
            nonlocal send_s
            t0 = time.monotonic()
            try:
                r = http.send(request)
            except httpx.HTTPError as exc:  # a dropped connection is a failure too
                report.failures.append(f"{label}: {type(exc).__name__}: {exc}")
                report.requests += 1
                return
            elapsed = time.monotonic() - t0
            send_s += elapsed
            report.operation_seconds[label] += elapsed
            report.requests += 1
            report.statuses[r.status_code] += 1
            report.by_operation[label] += 1
            problem = envelope_problem(r)
            if problem:
                report.failures.append(f"{label} {request.url.raw_path[:200]!r}: {problem}")

        # Rounds until the count is reached: hypothesis stops early on a small input space (an
        # operation without parameters has one request), so each round asks every operation again.
        unsatisfiable: set[tuple[str, str]] = set()
        rounds = 0
        while report.requests < examples and rounds < 50:
            rounds += 1
            before = report.requests
            for op in operations:
                for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                    if (op.label, mode.value) in unsatisfiable or report.requests >= examples:
                        continue

                    @settings(max_examples=per_op, deadline=None, database=None,
                              derandomize=seed is not None and rounds == 1, phases=[Phase.generate],
                              suppress_health_check=list(HealthCheck))
                    @given(case=op.as_strategy(generation_mode=mode))
                    def run(case: Any) -> None:
                        send(case)

                    try:
                        run()
                    except Unsatisfiable:  # nothing can break this operation's schema (no parameters)
                        unsatisfiable.add((op.label, mode.value))
                    except Exception as exc:  # noqa: BLE001 - a strategy that cannot generate is reported
                        report.failures.append(f"{op.label} ({mode.value}): generation failed: "
                                               f"{type(exc).__name__}: {str(exc)[:300]}")
                        unsatisfiable.add((op.label, mode.value))
            if report.requests == before:
                break
    report.seconds = time.monotonic() - start
    report.send_seconds = send_s
    return report
