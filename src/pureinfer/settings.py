"""Settings: CLI flags = environment variables `PUREINFER_*` = defaults, in that priority.

`ServerSettings` holds what every pureinfer server has (where it listens, its cache directory,
its callers' keys, the --insecure escape, its logs); `WorkerSettings` here and the gateway's
`GatewaySettings` extend it. List settings (`PUREINFER_API_KEYS`, `PUREINFER_TEXT_MODELS`) are
comma-separated in the environment (`CommaList`). The CLI builds `WorkerSettings(**flags)`;
pydantic-settings fills the rest.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pureinfer.paths import default_cache_dir as default_cache_dir  # re-exported

DEFAULT_TEXT_MODEL_CUDA = "Qwen/Qwen2.5-7B-Instruct"
DEFAULT_TEXT_MODEL_CPU = "Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_IMAGE_MODEL = "stabilityai/stable-diffusion-xl-base-1.0"
DEFAULT_TEXT_ALIAS = "qwen_instruct"


class Role(StrEnum):
    CHAT = "chat"
    IMAGE = "image"
    ALL = "all"

    @property
    def serves_text(self) -> bool:
        return self in (Role.CHAT, Role.ALL)

    @property
    def serves_images(self) -> bool:
        return self in (Role.IMAGE, Role.ALL)


def split_commas(value: Any) -> Any:
    """`"a, b,,c"` -> `["a", "b", "c"]`: a list setting given as one environment variable."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


# NoDecode: pydantic-settings would parse a list from the environment as JSON; ours are commas.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_commas)]


class ServerSettings(BaseSettings):
    """What the worker and the gateway share: where they listen, the cache directory, their
    callers' API keys and the rule that protects them, the request-body limit, and their logs."""

    model_config = SettingsConfigDict(env_prefix="PUREINFER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    cache_dir: Path = Field(default_factory=default_cache_dir)
    api_keys: CommaList = Field(default_factory=list)
    insecure: bool = False  # listen on a non-loopback address without keys
    max_body_bytes: int = Field(1_048_576, ge=1)  # larger request bodies: 413 before they are parsed
    log_level: str = "INFO"
    log_prompts: Literal["none", "preview", "full"] = "preview"

    def required_keys(self) -> list[tuple[list[str], str, str]]:
        """(keys, what they are, how to give them): each must be non-empty on a public address."""
        return [(self.api_keys, "an API key", "--api-key KEY (or PUREINFER_API_KEYS)")]

    @model_validator(mode="after")
    def _refuse_open_public_listen(self) -> ServerSettings:
        if self.insecure or is_loopback_host(self.host):
            return self
        for keys, what, how in self.required_keys():
            if not keys:
                raise ValueError(f"refusing to listen on {self.host} without {what}: pass {how}, "
                                 "or --insecure to accept unauthenticated callers")
        return self


class WorkerSettings(ServerSettings):
    """A worker: its role, models, limits, image options and self-registration with a gateway."""

    role: Role = Role.CHAT
    demo: bool = False

    # Models. text_models entries are "[ALIAS=]PATH_OR_HUB_ID"; the first is the default.
    text_models: CommaList = Field(default_factory=list)
    image_model: str | None = None
    device: str | None = None  # None: cuda when available, else cpu
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"

    # Security (beside api_keys and insecure).
    signing_secret: str | None = None
    signature_max_skew_s: int = 300

    # Limits.
    max_tokens_limit: int = 2000
    request_timeout_s: float = 120.0
    max_running_requests: int = 16
    max_queued_requests: int = 64
    drain_timeout_s: float = 30.0

    # Device memory and the text engine's step (see engines/text/kvcache.py and bench/README.md).
    # The share of the GPU this process plans with: weights, the image engine's measured peak and
    # the text KV cache (what remains after the others) must fit in it.
    gpu_memory_fraction: float = Field(0.9, gt=0.0, le=1.0)
    # Prompt tokens per text step; None: 256 on the CPU, 512 on CUDA. Larger prefills faster but
    # stalls every decoding request for the whole chunk: choose it by measured inter-token latency.
    prefill_chunk_tokens: int | None = Field(None, ge=16)

    # Observability (beside log_level and log_prompts).
    metrics_window_s: float = 60.0

    # Images (used by the image role).
    image_min_size: int | None = None  # None: 256 (64 with --demo)
    image_max_size: int | None = None  # None: 2048 (512 with --demo)
    image_max_batch: int = 4
    image_batch_wait_ms: float = 20.0
    # True: each image's UNet call keeps its lone shape, so pixels never depend on the batch (see
    # engines/image/sdxl.py); False: one UNet call per batch, the GPU's speed-up, rounding-level
    # differences. None: exact on the CPU, batched on CUDA.
    image_exact_batching: bool | None = None
    # An fp16-safe SDXL VAE (folder or hub id, e.g. madebyollin/sdxl-vae-fp16-fix) decoding in fp16;
    # without it the stock VAE is kept in fp32 on CUDA (converted once at load, never per call).
    image_vae_fp16_fix: str | None = None
    image_channels_last: bool = False  # UNet/VAE in channels-last memory format (measure on your GPU)
    image_compile: bool = False  # torch.compile the UNet at start-up (minutes of warm-up)
    image_warmup: bool = True  # one generation at start-up, before the worker is ready
    image_thumbnails: bool = True  # a 256-px WEBP beside each PNG (thumbnail_url)
    attention_slicing: bool = False
    vae_tiling: bool = False  # always tile the VAE decode; it is tiled above 1 megapixel regardless
    storage: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None  # None: <cache_dir>/files
    public_base_url: str | None = None
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_presign_expiry_s: int = 3600

    # CPU threads: torch's intra-op threads. None: the CPUs of this process's affinity mask
    # (os.sched_getaffinity). Several workers on one host should divide the cores between them.
    threads: int | None = Field(None, ge=1)

    # Queue mode: pull jobs from Redis Streams (worker/queue_mode.py) beside or instead of HTTP.
    queue: str | None = None  # redis://host:port/db
    queue_prefix: str = "pureinfer"  # the gateway's --queue-prefix
    queue_visibility_timeout_s: float = 30.0  # the gateway's: a job silent this long is re-delivered
    queue_max_attempts: int = Field(3, ge=1)
    queue_concurrency: int = Field(2, ge=1)  # jobs this worker runs at once (each holds an admission permit)
    no_http: bool = False  # queue mode only: no listening socket (behind NAT)

    # Gateway registration: gateway_url turns it on and then needs gateway_secret (the gateway's
    # --registration-secret), which must differ from signing_secret.
    gateway_url: str | None = None
    gateway_secret: str | None = None
    worker_url: str | None = None  # the URL the gateway should call us at
    heartbeat_s: float = 10.0

    @model_validator(mode="after")
    def _queue(self) -> WorkerSettings:
        if self.no_http and not self.queue:
            raise ValueError("--no-http needs --queue redis://...: without HTTP the queue is the only way in")
        if self.queue and not self.queue.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"--queue must be a redis:// URL, not {self.queue!r}")
        return self

    def effective_threads(self) -> int:
        return self.threads or len(os.sched_getaffinity(0))

    @model_validator(mode="after")
    def _registration_secret(self) -> WorkerSettings:
        if self.gateway_url and not self.gateway_secret:
            raise ValueError("--gateway needs --gateway-secret (the gateway's --registration-secret): "
                             "registration and heartbeats are signed")
        if self.gateway_secret and self.gateway_secret == self.signing_secret:
            raise ValueError("--gateway-secret must differ from --signing-secret: the registration secret "
                             "and the key of the gateway's calls are kept apart")
        return self

    @property
    def demo_dir(self) -> Path:
        return self.cache_dir / "demo-models"

    def text_model_specs(self, cuda: bool) -> list[tuple[str, str]]:
        """(alias, path_or_id) pairs in order; the first is the default model."""
        if self.demo:
            return [(DEFAULT_TEXT_ALIAS, str(self.demo_dir / "text"))] if not self.text_models else \
                [parse_model_spec(s) for s in self.text_models]
        if not self.text_models:
            return [(DEFAULT_TEXT_ALIAS, DEFAULT_TEXT_MODEL_CUDA if cuda else DEFAULT_TEXT_MODEL_CPU)]
        return [parse_model_spec(s) for s in self.text_models]

    def image_model_path(self) -> str:
        if self.image_model:
            return self.image_model
        return str(self.demo_dir / "image") if self.demo else DEFAULT_IMAGE_MODEL

    def image_size_bounds(self) -> tuple[int, int]:
        lo = self.image_min_size if self.image_min_size is not None else (64 if self.demo else 256)
        hi = self.image_max_size if self.image_max_size is not None else (512 if self.demo else 2048)
        return lo, hi


def parse_model_spec(spec: str) -> tuple[str, str]:
    """`alias=path` -> (alias, path); a bare path gets the default alias."""
    alias, sep, path = spec.partition("=")
    if sep and alias and "/" not in alias:
        return alias.strip(), path.strip()
    return DEFAULT_TEXT_ALIAS, spec.strip()


def is_loopback_host(host: str) -> bool:
    import ipaddress

    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- CLI flags for settings --------------------------------------------------------------------
# The commands (`pureinfer worker`, `pureinfer gateway`, `pureinfer templates`) add one flag per
# setting with `add_setting_flag`. The flag's argparse default stays None ("not given"), so the
# environment and then the field's own default apply; the help line states that default, read
# from the settings class, so the text cannot drift from the behaviour.

SETTINGS_EPILOG = """\
Every flag is also an environment variable: PUREINFER_ and the flag's name (--max-body-bytes is
PUREINFER_MAX_BODY_BYTES; the help names the variable where it differs); lists are comma-separated
(PUREINFER_API_KEYS=a,b). A flag overrides the environment, which overrides the default."""


def shown_default(settings_cls: type[BaseSettings], name: str) -> str:
    """A settings field's default as a CLI help text shows it (lists comma-separated, bools on/off)."""
    value = settings_cls.model_fields[name].get_default(call_default_factory=True)
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, list):
        return ",".join(map(str, value)) or "none"
    if value == "":
        return '""'
    return str(value)


def env_name(settings_cls: type[BaseSettings], name: str) -> str:
    """The environment variable of a settings field (`PUREINFER_API_KEYS`)."""
    return f"{settings_cls.model_config.get('env_prefix', '')}{name}".upper()


def add_setting_flag(group: Any, settings_cls: type[BaseSettings], *flags: str, help: str,
                     **kwargs: Any) -> Any:
    """`group.add_argument(*flags, ...)` for the field of `settings_cls` named by the flag's dest,
    with "(default: X)" appended to `help` from the field, and the environment variable where its
    name is not the flag's. A field whose default is None means something ("cuda when available",
    "a sqlite file in the cache dir"): its help must say what, as "(default: ...)", or this raises
    (a developer error, caught by the CLI tests)."""
    kwargs.setdefault("default", None)
    action = group.add_argument(*flags, help=help, **kwargs)
    if action.default is not None:
        raise ValueError(f"{flags[0]}: a settings flag's argparse default must be None (not given)")
    if action.dest not in settings_cls.model_fields:
        raise ValueError(f"{flags[0]}: {settings_cls.__name__} has no field {action.dest!r}")
    if "(default" not in help:
        if settings_cls.model_fields[action.dest].get_default(call_default_factory=True) is None:
            raise ValueError(f"{flags[0]}: say in the help what the default (None) means")
        shown = shown_default(settings_cls, action.dest).replace("%", "%%")  # argparse %-formats help
        help = f"{help} (default: {shown})"
    env = env_name(settings_cls, action.dest)
    if env != env_name(settings_cls, flags[0].lstrip("-").replace("-", "_")):
        help = f"{help} (environment: {env})"
    action.help = help
    return action
