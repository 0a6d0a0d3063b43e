"""Gateway settings: CLI flags = environment variables `PUREINFER_*` = defaults.

Host, port, cache dir, caller keys, --insecure and logging come from the core `ServerSettings`
(shared with the worker). Comma-separated lists in the environment (`PUREINFER_API_KEYS`,
`PUREINFER_ADMIN_KEYS`, `PUREINFER_WORKER_ALLOWLIST`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pureinfer.settings import CommaList, ServerSettings

DEFAULT_ALLOWLIST = ["127.0.0.0/8", "::1/128", "localhost"]


class GatewaySettings(ServerSettings):
    """The gateway: its store, callers and admins, how it calls workers, templates and audit."""

    port: int = 8080
    database_url: str | None = None  # None: sqlite file <cache_dir>/gateway.db

    # Admins (callers: api_keys). No keys at all is allowed on loopback, or anywhere with --insecure.
    admin_keys: CommaList = Field(default_factory=list)

    # Calling workers: Bearer key and HMAC secret the workers expect.
    worker_api_key: str | None = None
    worker_signing_secret: str | None = None
    # Secret workers sign their registration and heartbeats with (their --gateway-secret); it
    # turns self-registration on (without it only --insecure accepts unsigned registration) and
    # must differ from worker_signing_secret.
    registration_secret: str | None = None
    # Worker URL rules: host names ("name", "*.suffix") and CIDRs workers may live in.
    worker_allowlist: CommaList = Field(default_factory=lambda: list(DEFAULT_ALLOWLIST))

    # Timeouts, retries, circuit breaker.
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 60.0
    request_timeout_s: float = 120.0  # overall deadline of one gateway request
    max_attempts: int = 3
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 2.0
    breaker_failures: int = 3
    breaker_cooldown_s: float = 10.0

    # The store: a database slower than this is treated as down (cached templates serve,
    # audit records go to the spill file).
    store_timeout_s: float = 2.0

    # Registry.
    health_interval_s: float = 5.0
    registry_refresh_s: float = 5.0
    heartbeat_timeout_s: float = 60.0  # registered workers silent this long are not routed to

    # Templates.
    default_template: str | None = None  # fallback level 3
    allow_nsfw_fallback: bool = False  # level 2 from sfw to nsfw templates only when enabled
    default_enhancer_model: str = "qwen_instruct"

    # Audit.
    audit_spill_path: Path | None = None  # None: <cache_dir>/gateway-audit-spill.jsonl
    audit_batch_size: int = 200
    audit_flush_interval_s: float = 0.5
    audit_max_buffer: int = 10_000
    audit_retention_days: float = 30.0
    audit_preview_chars: int = 200
    # What of the prompt and response the audit row keeps: previews (audit_preview_chars), or
    # with "full" the exact messages sent and the whole response as well.
    audit_prompts: Literal["none", "preview", "full"] = "preview"

    # Jobs (POST /jobs): the queue, how the gateway runs them, webhooks, retention.
    queue: str = "memory"  # memory | redis://host:port/db
    queue_prefix: str = "pureinfer"  # Redis key prefix (several deployments may share one server)
    queue_visibility_timeout_s: float = 30.0  # a claimed job silent this long is re-delivered
    queue_max_attempts: int = Field(3, ge=1)  # deliveries before a job goes to the dead letters
    job_concurrency: int = Field(8, ge=1)  # memory queue: jobs this gateway runs on its workers at once
    # Memory queue: how long a job waits for a healthy worker of its type (handed back to the
    # queue with a backoff meanwhile) before it fails with WORKER_UNAVAILABLE / WORKER_OVERLOADED.
    job_worker_wait_s: float = Field(300.0, ge=0)
    job_poll_interval_s: float = 0.2  # cancel checks and heartbeats of a running job; SSE polling
    job_retention_days: float = 30.0
    webhook_secret: str | None = None  # whsec_... (Standard Webhooks); needed for callback_url
    webhook_allowlist: CommaList = Field(default_factory=list)  # hosts/CIDRs callbacks may reach beyond public
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_backoff_initial_s: float = 1.0
    webhook_backoff_max_s: float = 300.0
    webhook_timeout_s: float = 10.0

    @model_validator(mode="after")
    def _separate_secrets(self) -> GatewaySettings:
        if self.registration_secret and self.registration_secret == self.worker_signing_secret:
            raise ValueError("--registration-secret must differ from --worker-signing-secret: a worker that "
                             "registers must not hold the key that signs the gateway's calls to workers")
        return self

    def required_keys(self) -> list[tuple[list[str], str, str]]:
        return [*super().required_keys(),
                (self.admin_keys, "an admin key", "--admin-key KEY (or PUREINFER_ADMIN_KEYS)")]

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.cache_dir / 'gateway.db'}"

    @property
    def effective_spill_path(self) -> Path:
        return self.audit_spill_path or self.cache_dir / "gateway-audit-spill.jsonl"
