"""Webhook delivery of finished jobs, signed by the Standard Webhooks convention with the
`standardwebhooks` package (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
HMAC-SHA256>`), the secret being `--webhook-secret whsec_...`.

The callback URL is validated exactly as worker URLs are (gateway/workers/urls.py: no loopback,
private, link-local or metadata addresses unless allowlisted with --webhook-allow), at submission
and again before each attempt, and the request connects to the addresses validated (the pinning
transport of gateway/workers/transport.py), never following redirects. Any answer but 2xx is
retried with exponential backoff and full jitter, a receiver's Retry-After (seconds) taking its
place when given; every attempt is recorded on the job. The `webhook-id` is the same for every
attempt of one job, so a receiver can drop repeats.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx
from standardwebhooks import Webhook

from pureinfer.errors import InvalidPayload
from pureinfer.gateway.settings import GatewaySettings
from pureinfer.gateway.workers.transport import AddressPins, worker_http_client
from pureinfer.gateway.workers.urls import UrlPolicy

log = logging.getLogger("pureinfer.gateway.webhooks")
Record = Callable[[dict[str, Any]], Awaitable[None]]


def retry_after_s(value: str | None) -> float | None:
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


class WebhookSender:
    def __init__(self, settings: GatewaySettings, policy: UrlPolicy | None = None) -> None:
        self.settings = settings
        self.signer = Webhook(settings.webhook_secret) if settings.webhook_secret else None
        self.policy = policy or UrlPolicy(settings.webhook_allowlist)
        self.pins = AddressPins()
        self.http = worker_http_client(self.pins)

    async def validate(self, url: str) -> str:
        """The normalised URL, or INVALID_PAYLOAD naming `callback_url`."""
        if self.signer is None:
            raise InvalidPayload.field("callback_url", "this gateway signs no webhooks: it was started without "
                                                       "--webhook-secret")
        checked = await anyio.to_thread.run_sync(self.policy.validate, url, "callback_url")
        self.pins.pin(checked.host, checked.port, checked.addresses)
        return url.strip()

    def backoff_s(self, attempt: int, retry_after: float | None) -> float:
        s = self.settings
        if retry_after is not None:
            return min(retry_after, s.webhook_backoff_max_s)
        return random.uniform(0, min(s.webhook_backoff_max_s, s.webhook_backoff_initial_s * 2 ** (attempt - 1)))

    def signed(self, msg_id: str, body: str) -> dict[str, str]:
        assert self.signer is not None
        now = datetime.now(UTC)
        return {"content-type": "application/json", "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self.signer.sign(msg_id, now, body)}

    async def _attempt(self, url: str, msg_id: str, body: str) -> tuple[int | None, str | None, float | None]:
        try:
            await self.validate(url)  # names may resolve elsewhere now: validated and pinned again
            resp = await self.http.post(url, content=body.encode(), headers=self.signed(msg_id, body),
                                        timeout=self.settings.webhook_timeout_s)
        except InvalidPayload as exc:
            return None, exc.message, None
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300], None
        if 200 <= resp.status_code < 300:
            return resp.status_code, None, None
        return resp.status_code, f"HTTP {resp.status_code}", retry_after_s(resp.headers.get("retry-after"))

    async def deliver(self, job_id: str, url: str, job: dict[str, Any], record: Record) -> bool:
        """POST the job until a 2xx or the attempts run out; `record` stores each attempt."""
        msg_id = f"msg_{job_id}"
        event = f"job.{job['status']}"
        body = json.dumps({"type": event, "timestamp": datetime.now(UTC).isoformat(), "data": job},
                          separators=(",", ":"), default=str)
        for attempt in range(1, self.settings.webhook_max_attempts + 1):
            status, error, retry_after = await self._attempt(url, msg_id, body)
            last = error is None or attempt == self.settings.webhook_max_attempts
            wait = None if last else self.backoff_s(attempt, retry_after)
            await record({"at": datetime.now(UTC).isoformat(), "status": status, "error": error,
                          "next_retry_s": None if wait is None else round(wait, 3)})
            if error is None:
                log.info("webhook delivered", extra={"event": "webhook_delivered", "job_id": job_id,
                                                     "attempt": attempt})
                return True
            log.warning("webhook attempt failed", extra={"event": "webhook_failed", "job_id": job_id,
                                                         "attempt": attempt, "error": error})
            if wait is not None:
                await asyncio.sleep(wait)
        return False

    async def close(self) -> None:
        await self.http.aclose()
