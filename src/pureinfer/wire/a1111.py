"""Wire models of AUTOMATIC1111's web UI API (`/sdapi/v1/...`), as its clients (webuiapi, the
front-ends built on it) send them. No torch, no FastAPI here.

Clients send every field of A1111's form with its default value (webuiapi sends ~45), so unknown
fields are ignored, and fields naming a feature we do not have (hires fix, face restoration,
tiling, variation seeds, styles, scripts, extensions, per-request settings) are accepted at their
"off" value and refused by name otherwise: the answer is never for a request we did not run.

Seeds follow A1111: -1 draws one; image i of the `batch_size * n_iter` images uses seed + i
(A1111's `all_seeds`), which is also our engine's rule, so the same seed gives the same images'
seeds on both. The difference: A1111 runs `n_iter` batches one after another; here the images
are one request, which the engine batches as it sees fit (an image depends only on its seed and
the parameters, not on what shares its batch, with exact batching).

Errors take A1111's shape (`a1111_error`), with our code fields beside it. The answers both
surfaces build the same way are here too: txt2img's (`txt2img_response`), and the progress of the
jobs in flight (`JobBoard`), which each app keeps one of.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pureinfer.errors import InvalidPayload, PureInferError, envelope

MAX_IMAGES = 8  # the native request's num_images bound
MAX_SEED = 2**32 - 1

# A1111's sampler names of our schedulers (api/image/pnginfo.py writes the same names).
SAMPLERS = {"Euler": "euler", "Euler a": "euler_a", "DPM++ 2M": "dpmpp_2m", "DDIM": "ddim"}
SAMPLER_ALIASES = {"Euler": ["k_euler"], "Euler a": ["k_euler_a", "k_euler_ancestral"],
                   "DPM++ 2M": ["k_dpmpp_2m"], "DDIM": []}
# A1111 1.9+ names the noise schedule apart from the sampler; ours is each sampler's own.
AUTOMATIC_SCHEDULES = frozenset({"automatic", "Automatic"})
UNSUPPORTED = "not supported by this server"


def _off(value: Any) -> Any:
    """A feature we do not have: refused unless left at its 'off' value."""
    if value:
        raise ValueError(f"{UNSUPPORTED}; leave it off")
    return value


class Txt2ImgRequest(BaseModel):
    """`POST /sdapi/v1/txt2img`. Defaults are A1111's."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = ""
    negative_prompt: str = ""
    width: int = Field(default=512, ge=1)
    height: int = Field(default=512, ge=1)
    steps: int = Field(default=50, ge=1, le=150)
    cfg_scale: float = Field(default=7.0, ge=0.0, le=30.0)
    seed: int = Field(default=-1, ge=-1, le=MAX_SEED, description="-1 draws one; image i uses seed + i")
    batch_size: int = Field(default=1, ge=1, le=MAX_IMAGES)
    n_iter: int = Field(default=1, ge=1, le=MAX_IMAGES)
    sampler_name: str | None = Field(default=None, description=f"One of {sorted(SAMPLERS)}")
    sampler_index: str | None = Field(default=None, description="The older name of sampler_name")
    scheduler: str | None = Field(default=None, description="'automatic' only (each sampler's own schedule)")
    send_images: bool = True
    save_images: bool = False
    # Features A1111 has and we do not: accepted at their "off" value only.
    enable_hr: bool = False
    restore_faces: bool = False
    tiling: bool = False
    subseed_strength: float = 0.0
    styles: list[str] = Field(default_factory=list)
    script_name: str | None = None
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    override_settings: dict[str, Any] = Field(default_factory=dict, description="Only sd_model_checkpoint, "
                                              "naming the model this worker serves")

    _off = field_validator("enable_hr", "restore_faces", "tiling", "subseed_strength", "styles",
                           "script_name", "alwayson_scripts", "save_images")(_off)

    @field_validator("sampler_name", "sampler_index")
    @classmethod
    def _known_sampler(cls, value: str | None) -> str | None:
        if value is not None and value not in SAMPLERS:
            raise ValueError(f"unknown sampler {value!r}; this server has {sorted(SAMPLERS)}")
        return value

    @field_validator("scheduler")
    @classmethod
    def _automatic_schedule(cls, value: str | None) -> str | None:
        if value is not None and value not in AUTOMATIC_SCHEDULES:
            raise ValueError(f"schedule {value!r} is {UNSUPPORTED}; send 'automatic'")
        return value

    @field_validator("override_settings")
    @classmethod
    def _only_the_checkpoint(cls, value: dict[str, Any]) -> dict[str, Any]:
        other = sorted(set(value) - {"sd_model_checkpoint"})
        if other:
            raise ValueError(f"settings {other} are {UNSUPPORTED}; only sd_model_checkpoint is")
        return value

    @model_validator(mode="after")
    def _image_count(self) -> Txt2ImgRequest:
        if self.batch_size * self.n_iter > MAX_IMAGES:
            raise ValueError(f"batch_size * n_iter must be at most {MAX_IMAGES} "
                             f"(got {self.batch_size} * {self.n_iter})")
        return self

    @property
    def sampler(self) -> str:
        """A1111's precedence: sampler_name, then sampler_index, then its default."""
        return self.sampler_name or self.sampler_index or "Euler"

    @property
    def num_images(self) -> int:
        return self.batch_size * self.n_iter

    def echo(self) -> dict[str, Any]:
        """A1111's `parameters`: the request as it was understood."""
        return self.model_dump()


def a1111_error(err: PureInferError, request_id: str | None) -> dict[str, Any]:
    """A1111's error body (`error`: the kind, `detail`: what went wrong, `body`, `errors`) and ours
    (`error_code`, `details`, `suggested_action`, `request_id`, `success`)."""
    ours = envelope(err, request_id)
    return {**ours, "error": err.code.value, "detail": err.message, "body": "", "errors": err.message}


def checkpoint_name(checkpoint: Any) -> str:
    """A1111 titles look like "name.safetensors [hash]"; the name before them is what counts."""
    return str(checkpoint).split(" [")[0].removesuffix(".safetensors").removesuffix(".ckpt")


def check_options(options: dict[str, Any], current: dict[str, Any], served: list[str]) -> None:
    """A1111's `POST /options`: a setting may be 'changed' to the value it has, the checkpoint to a
    model that is served (naming another is refused, not ignored); anything else is refused by name."""
    problems = []
    for key, value in options.items():
        if key not in current:
            problems.append({"field": key, "message": f"not a setting of this server; it has {sorted(current)}"})
        elif key == "sd_model_checkpoint" and checkpoint_name(value) not in served:
            problems.append({"field": key, "message": f"not a model served here; served: {served}"})
        elif key != "sd_model_checkpoint" and value != current[key]:
            problems.append({"field": key, "message": f"fixed at {current[key]!r} on this server"})
    if problems:
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidPayload(f"Invalid request: {summary}", {"fields": problems})


def _timestamp() -> str:
    """A1111's `job_timestamp`: local time, to the second."""
    return datetime.now().strftime("%Y%m%d%H%M%S")


def txt2img_response(body: Txt2ImgRequest, images: list[dict[str, Any]], infotexts: list[str], *,
                     width: int | None, height: int | None, cfg_scale: float | None, steps: int | None,
                     model_used: str | None, ours: dict[str, Any]) -> dict[str, Any]:
    """A1111's txt2img answer for `images` (the native items, each with its `seed` and `b64_json`):
    the images when `send_images`, the request as understood (`parameters`), and `info`, the JSON
    string A1111 returns: the values that ran (None where the worker did not say), then `ours` (our
    proof fields) after A1111's own keys."""
    seeds = [item["seed"] for item in images]
    n = len(seeds)
    info = {
        "prompt": body.prompt, "all_prompts": [body.prompt] * n,
        "negative_prompt": body.negative_prompt, "all_negative_prompts": [body.negative_prompt] * n,
        "seed": seeds[0], "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * n, "subseed_strength": 0,
        "width": width, "height": height, "sampler_name": body.sampler, "cfg_scale": cfg_scale,
        "steps": steps, "batch_size": body.batch_size, "n_iter": body.n_iter, "restore_faces": False,
        "sd_model_name": model_used, "sd_model_hash": None, "seed_resize_from_w": -1,
        "seed_resize_from_h": -1, "denoising_strength": None, "extra_generation_params": {},
        "index_of_first_image": 0, "infotexts": infotexts, "styles": [], "job_timestamp": _timestamp(),
        "clip_skip": 1, "is_using_inpainting_conditioning": False, "version": "pureinfer",
        **ours,
    }
    return {"images": [item["b64_json"] for item in images] if body.send_images else [],
            "parameters": body.echo(), "info": json.dumps(info, ensure_ascii=False)}


@dataclass
class Job:
    """A txt2img job in flight, as `GET /sdapi/v1/progress` reports it."""

    request_id: str
    steps: int
    started: float = field(default_factory=time.monotonic)
    timestamp: str = field(default_factory=_timestamp)
    step: int = 0  # denoising steps done, as the engine reports them

    def advance(self, step: int, total: int) -> None:
        self.step, self.steps = step, total


@dataclass
class JobBoard:
    """The txt2img jobs in flight, oldest first, for `GET /sdapi/v1/progress` (A1111's shape:
    the current job's progress and `job_count`). Event-loop only, so no lock."""

    jobs: dict[str, Job] = field(default_factory=dict)

    def begin(self, job: Job) -> None:
        self.jobs[job.request_id] = job

    def end(self, request_id: str) -> None:
        self.jobs.pop(request_id, None)

    def progress(self) -> dict[str, Any]:
        current = next(iter(self.jobs.values()), None)
        state: dict[str, Any] = {"skipped": False, "interrupted": False, "stopping_generation": False,
                                 "job": "", "job_count": len(self.jobs), "job_timestamp": "0", "job_no": 0,
                                 "sampling_step": 0, "sampling_steps": 0}
        if current is None:
            return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None,
                    "textinfo": None}
        fraction = current.step / current.steps if current.steps else 0.0
        elapsed = time.monotonic() - current.started
        state.update(job=f"txt2img {current.request_id}", job_timestamp=current.timestamp,
                     sampling_step=current.step, sampling_steps=current.steps)
        return {"progress": round(fraction, 4),
                "eta_relative": round(elapsed / fraction - elapsed, 3) if fraction > 0 else 0.0,
                "state": state, "current_image": None, "textinfo": None}
