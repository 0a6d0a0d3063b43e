"""The gateway's CLI (templates import/export, the --insecure rule) and its JSON logs of the
seed's edge-function events."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from pureinfer.cli import main
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.logging import JsonFormatter
from tests.support.gateway import ADMIN, CALLER, tpl


def test_templates_cli_import_export(database_url, tmp_path, capsys):
    assert main(["templates", "import", "--starter", "--database-url", database_url]) == 0
    assert "5 created" in capsys.readouterr().out
    assert main(["templates", "import", "--starter", "--database-url", database_url]) == 0
    assert "0 created, 0 new versions, 5 unchanged" in capsys.readouterr().out
    out = tmp_path / "export.yaml"
    assert main(["templates", "export", "--database-url", database_url, "-o", str(out)]) == 0
    exported = yaml.safe_load(out.read_text())["templates"]
    assert {t["template_name"] for t in exported} >= {"sdxl_enhance_instruct_sfw", "playground_chat_sfw"}
    assert all(t["version"] == 1 and "latest" in t["labels"] for t in exported)
    bad = tmp_path / "bad.yaml"
    bad.write_text("templates:\n  - {template_name: x, token_limit: 0}\n")
    assert main(["templates", "import", str(bad), "--database-url", database_url]) == 1
    assert "template #1" in capsys.readouterr().err


def test_insecure_rule(tmp_path):
    with pytest.raises(ValueError, match="without an API key"):
        GatewaySettings(host="0.0.0.0", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="without an admin key"):
        GatewaySettings(host="0.0.0.0", api_keys=["k"], cache_dir=tmp_path)
    assert GatewaySettings(host="0.0.0.0", insecure=True, cache_dir=tmp_path).insecure
    assert GatewaySettings(host="0.0.0.0", api_keys=["k"], admin_keys=["a"], cache_dir=tmp_path)
    assert main(["gateway", "--host", "0.0.0.0", "--cache-dir", str(tmp_path)]) == 2


def test_json_formatter():
    rec = logging.LogRecord("pureinfer.gateway", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    rec.event, rec.promptLength = "enhance_request", 12
    line = json.loads(JsonFormatter().format(rec))
    assert (line["message"], line["event"], line["promptLength"], line["level"]) == \
        ("hello you", "enhance_request", 12, "INFO")


@pytest.mark.asyncio(loop_scope="session")
async def test_edge_function_events_are_logged(sqlite_url, make_gateway, fake_workers, caplog):
    app, c = await make_gateway(sqlite_url, background=False)
    await c.post("/templates", json=tpl(), headers=ADMIN)
    _, srv = fake_workers("w")
    await c.post("/workers", json={"url": srv.url}, headers=ADMIN)
    long_prompt = "a very long prompt " * 20
    with caplog.at_level(logging.INFO, logger="pureinfer.gateway"):
        r = await c.post("/enhance-prompt", json={"prompt": long_prompt, "quality": "high", "format": "png"},
                         headers=CALLER)
    assert r.status_code == 200
    events = {getattr(rec, "event", None): rec for rec in caplog.records}
    req = events["enhance_request"]
    assert req.prompt == long_prompt[:100] + "..." and req.promptLength == len(long_prompt)
    assert (req.jobType, req.quality, req.format, req.selectedModel) == ("image", "high", "png", "qwen_instruct")
    sel = events["template_selected"]
    assert (sel.template, sel.fallback_level, sel.workerType, sel.contentMode) == ("sdxl_instruct_sfw", 0, "chat", "sfw")
    pay = events["worker_payload"]
    assert (pay.messagesCount, pay.systemPromptLength, pay.userPromptLength, pay.maxTokens) == \
        (2, len("You write SDXL prompts."), len(long_prompt), 75)
    res = events["enhance_result"]
    assert res.templateUsed == "sdxl_instruct_sfw" and res.enhancedPrompt.startswith("[w] enhanced:")
    assert all(rec.request_id == r.json()["request_id"] for rec in (req, sel, pay, res))
