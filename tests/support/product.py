"""The product as a user runs it, for the process-level smoke tests (tests/smoke/): `pureinfer`
commands as real processes with the CLI's own logging (INFO, JSON lines on stderr), and an HTTP
client that signs like a real caller, checks each answer, and records which routes of the app's
OpenAPI document it called.

A process is started as `python -m pureinfer.cli ...`, which is what the `pureinfer` script runs
(`tests/test_cli.py` checks the script's entry point); its output goes to files, read back for the
failure messages and the traceback check.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from pureinfer.security import sign


class ProductProcess:
    """One `pureinfer ...` command running in its own process group."""

    def __init__(self, name: str, args: list[str], logs: Path) -> None:
        self.name = name
        self.args = args
        self.stdout_path = logs / f"{name}.stdout"
        self.stderr_path = logs / f"{name}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def environment() -> dict[str, str]:
        """The caller's environment without PUREINFER_* (the command line says it all)."""
        return {k: v for k, v in os.environ.items() if not k.startswith("PUREINFER_")}

    def start(self) -> ProductProcess:
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "pureinfer.cli", *self.args], stdout=out,
                                         stderr=err, stdin=subprocess.DEVNULL, env=self.environment(),
                                         start_new_session=True)
        return self

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.stderr.splitlines()[-lines:])

    def problems(self) -> list[str]:
        """Tracebacks and ERROR lines in its log: a smoke run has none."""
        return [line[:2000] for line in self.stderr.splitlines()
                if "Traceback" in line or '"level": "ERROR"' in line or line.startswith("ERROR")]

    def wait_until(self, ready: Callable[[], bool], what: str, timeout_s: float = 180) -> None:
        """Poll `ready` until it holds; fail at once if the process exits, or after `timeout_s`."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode} before {what}:\n"
                                     f"{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no {what} after {timeout_s} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def run_to_end(self, timeout_s: float = 120) -> int:
        """For one-shot commands: wait for the exit (killed past `timeout_s`); the exit code."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not finish in {timeout_s} s:\n{self.log_tail()}") from None

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM (the way a supervisor stops it), then SIGKILL to the group past `timeout_s`.
        The exit code, or None when it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def get_ok(url: str, **kwargs: Any) -> bool:
    """True when a GET answers 200 (for readiness polls; connection errors are False)."""
    try:
        return httpx.get(url, timeout=5, trust_env=False, **kwargs).status_code == 200
    except httpx.HTTPError:
        return False


def route_regex(template: str) -> re.Pattern[str]:
    """`/files/{key}` -> a pattern of the paths it serves (a parameter may hold slashes)."""
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join(".+" if p.startswith("{") else re.escape(p) for p in parts))


def sse_data(body: str) -> list[str]:
    """The `data:` payloads of a Server-Sent Events body, in order."""
    return [line[len("data:"):].strip() for line in body.splitlines() if line.startswith("data:")]


class SmokeClient:
    """Calls one app's endpoints, as its callers do (a Bearer key, and an HMAC signature when the
    app has a signing secret), and keeps going after a failure: every failure is collected, so one
    broken endpoint does not hide the next. `routes` (method, path template) come from the app's
    `/openapi.json`; `called` holds those a call was made to."""

    def __init__(self, name: str, base_url: str, *, key: str | None = None, secret: str | None = None) -> None:
        self.name = name
        self.base_url = base_url
        self.key = key
        self.secret = secret
        self.http = httpx.Client(base_url=base_url, timeout=120, trust_env=False)
        self.failures: list[str] = []
        self.routes: set[tuple[str, str]] = set()
        self.called: set[tuple[str, str]] = set()

    def __enter__(self) -> SmokeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def load_routes(self) -> None:
        """Every (method, path) of the app's OpenAPI document."""
        r = self.call("GET", "/openapi.json")
        assert r is not None, f"{self.name} serves no OpenAPI document: {self.failures}"
        self.routes = {(method.upper(), path) for path, ops in r.json()["paths"].items() for method in ops}

    def route_of(self, method: str, path: str) -> tuple[str, str] | None:
        """The route a request went to: the matching template with the most literal characters."""
        matches = [(m, t) for m, t in self.routes if m == method and route_regex(t).fullmatch(path)]
        return max(matches, key=lambda mt: len(re.sub(r"\{[^}]+\}", "", mt[1])), default=None)

    def headers(self, method: str, path: str, body: bytes, *, key: str | None, secret: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json"} if body else {}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if secret:
            headers |= sign(secret, method, path.split("?")[0], body)
        return headers

    def call(self, method: str, path: str, payload: Any = None, *, expect: int = 200,
             check: Callable[[httpx.Response], object] | None = None, auth: bool = True,
             key: str | None = None, secret: str | None = None, request_id: str | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response | None:
        """One request (with `request_id` as its X-Request-ID). A status other than `expect`, or
        a failing `check(response)` (its assertions), is recorded as a failure and answers None;
        otherwise the response."""
        body = json.dumps(payload).encode() if payload is not None else b""
        headers = self.headers(method, path, body, key=(key or self.key) if auth else None,
                               secret=(secret or self.secret) if auth else None) | (headers or {})
        if request_id:
            headers["X-Request-ID"] = request_id
        what = f"{self.name} {method} {path}"
        try:
            r = self.http.request(method, path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            self.failures.append(f"{what}: {type(exc).__name__}: {exc}")
            return None
        route = self.route_of(method, r.url.path)
        if route is not None:
            self.called.add(route)
        if r.status_code != expect:
            self.failures.append(f"{what} answered {r.status_code} (expected {expect}): {r.text[:500]}")
            return None
        if check is not None:
            try:
                check(r)
            except (AssertionError, KeyError, TypeError, ValueError) as exc:
                self.failures.append(f"{what}: the body is not of the documented shape: "
                                     f"{type(exc).__name__}: {exc}; body: {r.text[:500]}")
                return None
        return r

    def fetch(self, url: str, *, check: Callable[[httpx.Response], object]) -> None:
        """GET a URL the app handed out (an image), without credentials, as a browser would."""
        if not url.startswith(self.base_url):
            self.failures.append(f"{self.name}: {url} is not served by this app ({self.base_url})")
            return
        self.call("GET", url[len(self.base_url):], check=check, auth=False)

    def uncalled(self) -> list[str]:
        return sorted(f"{m} {p}" for m, p in self.routes - self.called)
