"""Webhooks: the finished job POSTed to callback_url, signed by the Standard Webhooks convention
and verified here with the `standardwebhooks` package's own verifier; retries with backoff that
honour Retry-After, each attempt recorded on the job; callback URLs validated as worker URLs."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from standardwebhooks import Webhook

from tests.gateway.jobs.test_jobs_memory import setup, wait_job
from tests.support.gateway import CALLER
from tests.support.live import LiveServer

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRET = "whsec_" + base64.b64encode(b"a test secret of 32 bytes length").decode()


def receiver(answers: list[tuple[int, dict[str, str]]]) -> tuple[FastAPI, list[dict[str, Any]]]:
    """Answers with `answers` in turn (then 200); records each delivery and whether it verified."""
    app = FastAPI()
    got: list[dict[str, Any]] = []

    @app.post("/hook")
    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            payload = Webhook(SECRET).verify(body, dict(request.headers))
            verified = True
        except Exception as exc:  # the verifier's own error: recorded, the test asserts on it
            payload, verified = {"error": str(exc)}, False
        got.append({"verified": verified, "payload": payload, "id": request.headers.get("webhook-id")})
        status, headers = answers.pop(0) if answers else (200, {})
        return JSONResponse({}, status_code=status, headers=headers)

    return app, got


async def test_signed_delivery_with_retries(sqlite_url, make_gateway, fake_workers):
    app, got = receiver([(503, {"Retry-After": "0"}), (500, {})])
    with LiveServer(app, lifespan="off") as hook:
        _app, c, _ctl, _wid = await setup(make_gateway, sqlite_url, fake_workers, webhook_secret=SECRET,
                                          webhook_allowlist=["127.0.0.0/8"], webhook_backoff_initial_s=0.01,
                                          webhook_backoff_max_s=0.05)
        r = await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "a fox"},
                                        "callback_url": f"{hook.url}/hook"}, headers=CALLER)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        job = await wait_job(c, job_id, lambda j: j["webhook"] and j["webhook"]["delivered"])
    assert job["status"] == "succeeded"
    assert [(a["status"], a["error"] is None) for a in job["webhook"]["attempts"]] == \
        [(503, False), (500, False), (200, True)]
    assert job["webhook"]["attempts"][0]["next_retry_s"] == 0  # the receiver's Retry-After
    assert [g["verified"] for g in got] == [True, True, True]
    assert len({g["id"] for g in got}) == 1  # one webhook-id for every attempt of one job
    payload = got[-1]["payload"]
    assert payload["type"] == "job.succeeded" and payload["data"]["job_id"] == job_id
    assert payload["data"]["result"]["enhanced_prompt"] == "[w] enhanced: a fox"


async def test_a_forged_signature_fails_the_verifier(sqlite_url, tmp_path):
    from pureinfer.gateway.jobs.webhooks import WebhookSender
    from tests.support.gateway import gateway_settings

    sender = WebhookSender(gateway_settings(tmp_path, sqlite_url, webhook_secret=SECRET))
    body = json.dumps({"type": "job.succeeded"})
    headers = sender.signed("msg_x", body)
    assert Webhook(SECRET).verify(body, headers) == {"type": "job.succeeded"}
    with pytest.raises(Exception, match="signature"):
        Webhook(SECRET).verify(body.replace("succeeded", "failed"), headers)
    await sender.close()


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "ftp://example.com/x",
                                 "http://user:pw@example.com/x"])
async def test_callback_urls_are_validated_as_worker_urls(sqlite_url, make_gateway, url):
    _app, c = await make_gateway(sqlite_url, background=False, webhook_secret=SECRET)
    r = await c.post("/jobs", json={"type": "enhance", "params": {"prompt": "a"}, "callback_url": url},
                     headers=CALLER)
    assert r.status_code == 400, r.text
    assert r.json()["details"]["fields"][0]["field"] == "callback_url"
