"""What only shows from outside, with the CLI's logging and real connections: an unhandled
exception is the coded 500 and the keep-alive connection survives it (both apps); `pureinfer
gateway` exits 0 on SIGTERM; one access line per request; refused requests are audited; httpx's
per-call lines stay out of the log; prompts appear in logs only as far as --log-prompts says, and
a prompt cannot forge a log line."""

from __future__ import annotations

import http.client
import json
import logging
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import ADMIN_KEY, CALLER_KEY, gateway_settings
from tests.support.live import LiveServer, free_port
from tests.support.product import ProductProcess, get_ok
from tests.support.worker import make_settings


def _boom() -> None:
    raise RuntimeError("secret internal detail")


def _worker_app(cache_dir: Path):
    from pureinfer.worker.app import create_app

    app = create_app(make_settings(cache_dir))
    app.add_api_route("/boom", _boom, methods=["GET"])
    return app


def _gateway_app(tmp_path: Path):
    from pureinfer.gateway.app import create_app

    app = create_app(gateway_settings(tmp_path, f"sqlite:///{tmp_path / 'gw.db'}"), start_background=False)
    app.add_api_route("/boom", _boom, methods=["GET"], tags=["public"])  # an audited route that fails
    return app


def _get(conn: http.client.HTTPConnection, path: str, rid: str) -> tuple[int, dict[str, str], dict]:
    conn.request("GET", path, headers={"X-Request-ID": rid, "Authorization": f"Bearer {CALLER_KEY}"})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())


def _wait(cond, what: str, timeout_s: float = 30):
    deadline = time.monotonic() + timeout_s
    while not (value := cond()):
        assert time.monotonic() < deadline, f"no {what} after {timeout_s} s"
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("which", ["worker", "gateway"])
def test_unhandled_exception_is_the_envelope_and_keeps_the_connection(which, cache_dir, tmp_path, caplog):
    app = _worker_app(cache_dir) if which == "worker" else _gateway_app(tmp_path)
    with LiveServer(app) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        status, headers, body = _get(conn, "/boom", "boom-1")
        sock = conn.sock
        # The same connection answers the next request: uvicorn closed it after Starlette re-raised.
        status2, _, body2 = _get(conn, "/boom", "boom-2")
        assert conn.sock is sock
        conn.close()
        for s, b, rid in ((status, body, "boom-1"), (status2, body2, "boom-2")):
            assert s == 500
            assert (b["success"], b["error"], b["error_code"], b["request_id"]) == (
                False, "Internal error", "INTERNAL_ERROR", rid)
            assert "secret internal detail" not in json.dumps(b)
        assert headers["x-request-id"] == "boom-1"
        assert "connection" not in headers or headers["connection"].lower() != "close"
        ours = [r for r in caplog.records if r.getMessage() == "unhandled error"]
        assert len(ours) == 2 and all(r.exc_info for r in ours)
        assert not [r for r in caplog.records if "Exception in ASGI application" in r.getMessage()]
        if which == "gateway":  # an internal error outside any service is in the audit trail too
            with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                              trust_env=False) as c:
                rows = _wait(lambda: c.get("/audit", params={"request_id": "boom-2"}).json()["records"],
                             "audit row")
            assert [(r["endpoint"], r["status"], r["error_code"]) for r in rows] == [("boom", 500, "INTERNAL_ERROR")]


# -- `pureinfer gateway` as a process -------------------------------------------------------------

SECRET_WORDS = "ultraviolet-pangolin-7731"


@pytest.fixture
def gateway_process(tmp_path: Path):
    """`pureinfer gateway` with caller/admin keys, a small body limit and the default logging."""
    port = free_port()
    proc = ProductProcess("gateway", [
        "gateway", "--port", str(port), "--cache-dir", str(tmp_path / "cache"), "--api-key", CALLER_KEY,
        "--admin-key", ADMIN_KEY, "--max-body-bytes", "4096"], tmp_path)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_until(lambda: get_ok(f"{url}/health"), "health")
        yield proc, url
    finally:
        proc.kill()


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        parsed.append(json.loads(line))  # every line of the log is one JSON object: no forged lines
    return parsed


def test_gateway_process_logs_audits_refusals_and_exits_0_on_sigterm(gateway_process, fake_workers):
    proc, url = gateway_process
    _, fake = fake_workers("logged")
    caller = {"Authorization": f"Bearer {CALLER_KEY}"}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    # A prompt that tries to forge a log line, long enough to be cut by the preview.
    forged = '\n{"level": "ERROR", "message": "forged"}\n'
    message = SECRET_WORDS + forged + "x" * 300 + "TAIL-NEVER-LOGGED"
    sent: dict[str, tuple[str, str, int]] = {}
    with httpx.Client(base_url=url, trust_env=False, timeout=60) as c:
        def call(method: str, path: str, expect: int, **kw) -> None:
            rid = f"edge-{uuid.uuid4().hex[:12]}"
            r = c.request(method, path, headers={"X-Request-ID": rid, **kw.pop("headers", {})}, **kw)
            assert r.status_code == expect, r.text
            assert r.json()["request_id"] == rid and r.json()["error_code"] if expect >= 400 else True
            sent[rid] = (method, path, expect)

        # a worker the gateway calls over httpx (its health check), to show httpx stays quiet
        r = c.post("/workers", json={"url": fake.url, "worker_type": "chat", "models": ["qwen_instruct"]},
                   headers=admin)
        assert r.status_code == 201, r.text
        call("POST", "/chat", 401, json={"message": "hi"})  # no key
        call("POST", "/chat", 401, json={"message": "hi"}, headers={"Authorization": "Bearer wrong"})
        call("POST", "/enhance-prompt", 413, content=b'{"prompt":"' + b"a" * 8000 + b'"}', headers=caller)
        call("POST", "/chat", 400, content=b"{not json", headers={**caller, "Content-Type": "application/json"})
        call("GET", "/chat", 405, headers=caller)
        call("POST", "/chat", 404, json={"message": message}, headers=caller)  # no template: audited by the service
        call("GET", "/health", 200)
        rows = {}
        for rid, (_, path, status) in sent.items():
            if path in ("/chat", "/enhance-prompt"):
                found = _wait(lambda rid=rid: c.get("/audit", params={"request_id": rid}, headers=admin)
                              .json()["records"], f"audit row of {rid}")
                assert len(found) == 1
                rows[rid] = found[0]
                assert (found[0]["endpoint"], found[0]["status"]) == (path.strip("/"), status)
                assert found[0]["error_code"]
    assert {r["error_code"] for r in rows.values()} >= {"UNAUTHORIZED", "INVALID_PAYLOAD"}
    assert all(r["caller_key_id"] is None for r in rows.values() if r["status"] == 401)

    assert proc.stop() == 0, proc.log_tail()
    log = _json_lines(proc.stderr)
    access = [line for line in log if line["logger"] == "pureinfer.access"]
    for rid, (method, path, status) in sent.items():
        mine = [line for line in access if line.get("request_id") == rid]
        assert len(mine) == 1, (rid, mine)
        assert (mine[0]["method"], mine[0]["path"], mine[0]["status"]) == (method, path, status)
        assert isinstance(mine[0]["duration_ms"], float | int)
    assert not [line for line in log if line["logger"].startswith(("httpx", "httpcore"))]
    assert not [line for line in log if line.get("message") == "forged"]
    text = proc.stderr
    assert SECRET_WORDS in text  # the preview (first 100 characters) is logged, as --log-prompts preview says
    assert "TAIL-NEVER-LOGGED" not in text and "a" * 200 not in text  # never beyond the preview, never a body
    assert not proc.problems(), proc.problems()


def test_gateway_log_prompts_none_keeps_prompts_out(tmp_path: Path):
    port = free_port()
    proc = ProductProcess("gateway-quiet", ["gateway", "--port", str(port), "--cache-dir", str(tmp_path / "c"),
                                            "--log-prompts", "none"], tmp_path)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_until(lambda: get_ok(f"{url}/health"), "health")
        r = httpx.post(f"{url}/chat", json={"message": SECRET_WORDS}, trust_env=False, timeout=60)
        assert r.status_code == 404 and r.json()["error_code"] == "TEMPLATE_NOT_FOUND"
        assert SECRET_WORDS not in r.text
        assert proc.stop() == 0
    finally:
        proc.kill()
    assert any(line.get("event") == "chat_request" for line in _json_lines(proc.stderr))
    assert SECRET_WORDS not in proc.stderr


def test_worker_process_exits_0_on_sigterm_when_idle(tmp_path: Path, cache_dir: Path):
    port = free_port()
    proc = ProductProcess("worker", ["worker", "--demo", "--role", "chat", "--port", str(port),
                                     "--cache-dir", str(cache_dir)], tmp_path)
    proc.start()
    try:
        proc.wait_until(lambda: get_ok(f"http://127.0.0.1:{port}/health/ready"), "readiness")
        assert proc.stop() == 0, proc.log_tail()
    finally:
        proc.kill()
    assert not proc.problems()


def test_httpx_info_lines_are_silenced():
    from pureinfer.logging import configure_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO")
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert not logging.getLogger("httpcore").isEnabledFor(logging.INFO)
        assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
