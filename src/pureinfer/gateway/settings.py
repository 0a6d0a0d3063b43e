"""Gateway settings: CLI flags = environment variables `PUREINFER_*` = defaults.

Comma-separated lists in the environment (`PUREINFER_API_KEYS`, `PUREINFER_WORKER_ALLOWLIST`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pureinfer.settings import CommaList, _split_commas, default_cache_dir, is_loopback_host

DEFAULT_ALLOWLIST = ["127.0.0.0/8", "::1/128", "localhost"]


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PUREINFER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    cache_dir: Path = Field(default_factory=default_cache_dir)
    database_url: str | None = None  # None: sqlite file <cache_dir>/gateway.db

    # Callers and admins. No keys at all is allowed on loopback, or anywhere with --insecure.
    api_keys: CommaList = Field(default_factory=list)
    admin_keys: CommaList = Field(default_factory=list)
    insecure: bool = False

    # Calling workers: Bearer key and HMAC secret the workers expect.
    worker_api_key: str | None = None
    worker_signing_secret: str | None = None
    # Secret workers sign their registration and heartbeats with (their --gateway-secret).
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

    log_level: str = "INFO"
    log_prompts: Literal["none", "preview", "full"] = "preview"

    @field_validator("api_keys", "admin_keys", "worker_allowlist", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_commas(value)

    @model_validator(mode="after")
    def _refuse_open_public_listen(self) -> GatewaySettings:
        if not self.insecure and not is_loopback_host(self.host):
            if not self.api_keys:
                raise ValueError(f"refusing to listen on {self.host} without an API key: pass --api-key KEY "
                                 "(or PUREINFER_API_KEYS), or --insecure to accept unauthenticated callers")
            if not self.admin_keys:
                raise ValueError(f"refusing to listen on {self.host} without an admin key: pass --admin-key KEY "
                                 "(or PUREINFER_ADMIN_KEYS), or --insecure")
        return self

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.cache_dir / 'gateway.db'}"

    @property
    def effective_spill_path(self) -> Path:
        return self.audit_spill_path or self.cache_dir / "gateway-audit-spill.jsonl"
