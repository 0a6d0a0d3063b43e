"""The worker's side of self-registration: `run_registration(settings, info)`.

Started from the worker's lifespan when `--gateway URL` is set. Registers (a request signed
with `settings.gateway_secret`: type, models, URL, info), then sends a heartbeat every
`settings.heartbeat_s` until cancelled. A gateway that is down, slow or restarted is tolerated:
failures are logged and retried with capped exponential backoff, and a heartbeat answered 404
(the gateway forgot us) registers again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import httpx

from pureinfer.security import sign
from pureinfer.settings import WorkerSettings

log = logging.getLogger("pureinfer.worker.registration")


def registration_body(settings: WorkerSettings, info: dict[str, Any]) -> dict[str, Any]:
    """What the worker tells the gateway about itself. `info` is the worker's `/worker/info`
    payload (its `worker_info` object, or that object itself)."""
    wi = info.get("worker_info", info) if isinstance(info, dict) else {}
    models = wi.get("models") or ([wi["model"]] if wi.get("model") else [])
    if not models:
        models = [alias for alias, _ in settings.text_model_specs(cuda=False)] if settings.role.serves_text else []
    url = settings.worker_url or f"http://{settings.host}:{settings.port}"
    return {"url": url.rstrip("/"), "worker_type": str(settings.role.value), "models": list(models), "info": wi}


async def _post(client: httpx.AsyncClient, settings: WorkerSettings, path: str, payload: dict[str, Any] | None) -> httpx.Response:
    body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else b""
    headers = {"Content-Type": "application/json"}
    if settings.gateway_secret:
        headers |= sign(settings.gateway_secret, "POST", path, body)
    assert settings.gateway_url
    return await client.post(settings.gateway_url.rstrip("/") + path, content=body, headers=headers)


async def run_registration(settings: WorkerSettings, info: dict[str, Any],
                           client: httpx.AsyncClient | None = None) -> None:
    """Register with `settings.gateway_url`, then heartbeat until cancelled. Never raises
    (except CancelledError)."""
    if not settings.gateway_url:
        return
    own = client is None
    client = client or httpx.AsyncClient(timeout=httpx.Timeout(5.0), follow_redirects=False, trust_env=False)
    body = registration_body(settings, info)
    worker_id: str | None = None
    backoff = 1.0
    try:
        while True:
            try:
                if worker_id is None:
                    resp = await _post(client, settings, "/workers/register", body)
                    if resp.status_code == 200:
                        worker_id = resp.json()["worker_id"]
                        log.info("registered with gateway", extra={"event": "gateway_registered",
                                                                   "gateway": settings.gateway_url,
                                                                   "worker_id": worker_id, "url": body["url"]})
                    else:
                        log.warning("gateway refused registration", extra={
                            "event": "gateway_registration_refused", "status": resp.status_code,
                            "body": resp.text[:500]})
                        raise RuntimeError("registration refused")
                else:
                    resp = await _post(client, settings, f"/workers/{worker_id}/heartbeat", None)
                    if resp.status_code == 404:
                        worker_id = None  # the gateway forgot us: register again now
                        continue
                    if resp.status_code >= 300:
                        raise RuntimeError(f"heartbeat answered {resp.status_code}")
                backoff = 1.0
                await asyncio.sleep(settings.heartbeat_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("gateway unreachable; will retry", extra={"event": "gateway_unreachable",
                                                                      "error": f"{type(exc).__name__}: {exc}"})
                await asyncio.sleep(min(backoff, settings.heartbeat_s) * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, 60.0)
    finally:
        if own:
            await client.aclose()
