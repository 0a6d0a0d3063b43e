"""`pureinfer serve --demo` as a person runs it (one real process, default logging): it prints
the console's URL and a generated admin key, keeps its keys in a 0600 file, registers its two
local workers with the gateway like remote ones, and serves the console and the main endpoints."""

from __future__ import annotations

import json
import stat
import time

import httpx

from tests.support.product import sse_data
from tests.support.serve import Served, printed


def test_serve_prints_the_console_and_keeps_its_keys(served: Served) -> None:
    assert printed(served.stdout, "console") == f"{served.url}/ui"
    keys_file = served.cache_dir / "serve-keys.json"
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    kept = json.loads(keys_file.read_text())
    assert (kept["admin_key"], kept["api_key"]) == (served.admin_key, served.api_key)
    assert "chat worker ready" in served.stdout and "image worker ready" in served.stdout


def test_serve_answers_as_the_product(served: Served) -> None:
    admin = {"Authorization": f"Bearer {served.admin_key}"}
    caller = {"Authorization": f"Bearer {served.api_key}"}
    with httpx.Client(base_url=served.url, timeout=120, trust_env=False) as http:
        assert http.get("/health").json()["healthy_workers"] == 2
        # The local workers registered themselves through the signed route, on loopback.
        workers = http.get("/workers", headers=admin).json()
        assert sorted(w["worker_type"] for w in workers) == ["chat", "image"]
        assert all(w["source"] == "registered" and w["healthy"] and w["url"].startswith("http://127.0.0.1:")
                   for w in workers)
        assert http.get("/workers").status_code == 401  # keys are on
        names = {f["template_name"] for f in http.get("/templates", headers=admin).json()}
        assert {"playground_chat_sfw", "sdxl_enhance_instruct_sfw"} <= names

        chat = http.post("/chat", json={"message": "A lighthouse", "max_tokens": 8, "seed": 3}, headers=caller)
        assert chat.status_code == 200, chat.text
        assert chat.json()["execution_metadata"]["template_name"] == "playground_chat_sfw"
        stream = http.post("/chat", json={"message": "A lighthouse", "max_tokens": 8, "seed": 3, "stream": True},
                           headers=caller)
        events = sse_data(stream.text)
        assert events[-1] == "[DONE]" and json.loads(events[-2])["response"] == chat.json()["response"]
        enhanced = http.post("/enhance-prompt", json={"prompt": "a cat", "seed": 1}, headers=caller)
        assert enhanced.status_code == 200 and enhanced.json()["enhanced_prompt"], enhanced.text
        # The audit writer batches: wait for the row (a condition, with a generous deadline).
        rid = chat.headers["x-request-id"]
        deadline = time.monotonic() + 60
        while not (audit := http.get("/audit", params={"request_id": rid}, headers=admin).json())["count"]:
            assert time.monotonic() < deadline, "no audit row for the chat request"
            time.sleep(0.1)
        assert audit["records"][0]["endpoint"] == "chat"

        # The console: the login page, a session for the admin key, a page behind it.
        assert http.get("/ui", follow_redirects=True).url.path == "/ui/login"
        signed = http.post("/session", json={"admin_key": served.admin_key})
        assert signed.status_code == 200 and "httponly" in signed.headers["set-cookie"].lower()
        page = http.get("/ui/templates")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        assert http.get("/ui/static/js/api.js").status_code == 200
