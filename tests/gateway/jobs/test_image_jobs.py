"""Image jobs with the in-process queue, on a real image worker (the tiny SDXL pipeline): progress
per denoising step in GET /jobs/{id} and over SSE, assets with URLs and seeds in the result."""

from __future__ import annotations

import json

import pytest

from tests.gateway.images.test_images import IMAGE, gateway_with, image_worker  # noqa: F401  (fixture)
from tests.gateway.jobs.test_jobs_memory import audit_rows, wait_job
from tests.support.gateway import CALLER

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_an_image_job_reports_progress_and_its_assets(make_gateway, sqlite_url, image_worker):  # noqa: F811
    _app, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")], job_poll_interval_s=0.02)
    params = {**IMAGE, "steps": 4}
    r = await c.post("/jobs", json={"type": "image", "params": params}, headers=CALLER)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    seen = []
    async with c.stream("GET", f"/jobs/{job_id}/events", headers=CALLER) as s:
        async for line in s.aiter_lines():
            if line.startswith("data:"):
                ev = json.loads(line[5:])
                seen.append((ev["status"], ev["progress"]))
    assert seen[-1] == ("succeeded", {"step": 4, "total": 4})
    steps = [p["step"] for st, p in seen if p is not None]
    assert steps == sorted(steps) and all(p["total"] == 4 for _st, p in seen if p is not None)
    job = await wait_job(c, job_id)
    res = job["result"]
    assert len(res["images"]) == 1 and res["images"][0]["url"].startswith(image_worker.url)
    assert res["images"][0]["seed"] == 21 and res["execution_metadata"]["worker_type"] == "image"
    assert job["progress"] == {"step": 4, "total": 4}
    # One audit row, the job's (the image service writes none of its own for a job).
    rows = await audit_rows(_app, c, request_id=job["request_id"])
    assert [(r["endpoint"], r["status"], r["worker_type"]) for r in rows] == [("jobs/image", 200, "image")]
    assert rows[0]["seeds"] == [21] and rows[0]["asset_urls"] == [res["images"][0]["url"]]
    assert rows[0]["image_params"]["steps"] == 4


async def test_image_params_are_validated_as_the_endpoints(make_gateway, sqlite_url, image_worker):  # noqa: F811
    _app, c = await gateway_with(make_gateway, sqlite_url, [(image_worker, "image")])
    r = await c.post("/jobs", json={"type": "image", "params": {**IMAGE, "steps": 0}}, headers=CALLER)
    assert r.status_code == 400 and r.json()["details"]["fields"][0]["field"] == "params.steps"
