"""The worker side of the seed's "Enhanced Logging": JSON lines with request id, endpoint, model,
prompt preview (100 characters, or none/full by --log-prompts), token counts and timings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from pureinfer.logging import JsonFormatter
from pureinfer.worker.app import create_app
from tests.support.worker import make_settings


def _lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict]:
    fmt = JsonFormatter()
    return [json.loads(fmt.format(r)) for r in caplog.records if getattr(r, "event", None) == event]


@pytest.mark.parametrize("mode", ["preview", "none", "full"])
def test_request_and_result_lines(cache_dir: Path, caplog: pytest.LogCaptureFixture, mode: str) -> None:
    prompt = "sunset " * 40  # 280 characters
    with TestClient(create_app(make_settings(cache_dir, log_prompts=mode))) as c, \
            caplog.at_level(logging.INFO, logger="pureinfer"):
        r = c.post("/enhance", json={"messages": [{"role": "user", "content": prompt}], "max_tokens": 3},
                   headers={"X-Request-ID": f"log-{mode}"})
        assert r.status_code == 200
    req, = [line for line in _lines(caplog, "request") if line.get("request_id") == f"log-{mode}"]
    res, = [line for line in _lines(caplog, "result") if line.get("request_id") == f"log-{mode}"]
    assert req["endpoint"] == "enhance" and req["model"] == "qwen_instruct" and req["messages_count"] == 1
    assert req["prompt_tokens"] == r.json()["prompt_tokens"] and req["max_tokens"] == 3
    assert res["tokens_generated"] == r.json()["tokens_generated"] and res["generation_time"] >= 0
    if mode == "none":
        assert req["prompt_preview"] is None and res["response_preview"] is None
    elif mode == "preview":
        assert req["prompt_preview"] == prompt[:100] + "..."
    else:
        assert req["prompt_preview"] == prompt
    access = [json.loads(JsonFormatter().format(r)) for r in caplog.records if r.name == "pureinfer.access"]
    assert any(a.get("request_id") == f"log-{mode}" and a["status"] == 200 and a["path"] == "/enhance"
               for a in access)
