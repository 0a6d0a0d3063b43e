"""The bridge between A1111's wire shapes and the worker's one image path (`ImageServing`).

`txt2img` builds the native `ImageGenerateRequest` (base64 output) and runs it through
`ImageServing.generate`: the same permit, validation (size bounds, CLIP tokens), engine, PNG
encoding with A1111's "parameters" chunk. This module only translates: samplers by name, seeds
as A1111 reports them (`all_seeds`), `info` as the JSON string A1111 returns, and the progress
of the jobs it runs (`JobBoard`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pureinfer.api.image.pnginfo import GenerationParameters
from pureinfer.api.image.protocol import ImageGenerateRequest
from pureinfer.api.image.serving import ImageServing
from pureinfer.errors import InvalidPayload
from pureinfer.wire.a1111 import SAMPLER_ALIASES, SAMPLERS, Txt2ImgRequest, check_options, checkpoint_name


@dataclass
class Job:
    request_id: str
    steps: int
    images: int
    started: float = field(default_factory=time.monotonic)
    timestamp: str = field(default_factory=lambda: datetime.now().strftime("%Y%m%d%H%M%S"))
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


class A1111Serving:
    def __init__(self, image: ImageServing, board: JobBoard) -> None:
        self.image = image
        self.board = board

    # -- catalogue ---------------------------------------------------------------------------------
    def title(self) -> str:
        return self.image.model_name

    def sd_models(self) -> list[dict[str, Any]]:
        return [{"title": self.title(), "model_name": self.title(), "hash": None, "sha256": None,
                 "filename": self.image.engine.model_id, "config": None}]

    def samplers(self) -> list[dict[str, Any]]:
        ours = set(self.image.engine.schedulers)
        return [{"name": name, "aliases": SAMPLER_ALIASES[name], "options": {}}
                for name, scheduler in SAMPLERS.items() if scheduler in ours]

    def options(self) -> dict[str, Any]:
        """The few A1111 settings that mean something here (read-only but the checkpoint)."""
        return {"sd_model_checkpoint": self.title(), "sd_checkpoint_hash": None, "samples_format": "png",
                "CLIP_stop_at_last_layers": 1, "eta_noise_seed_delta": 0}

    def set_options(self, options: dict[str, Any]) -> None:
        check_options(options, self.options(), [self.title()])

    def _is_ours(self, checkpoint: Any) -> bool:
        return checkpoint_name(checkpoint) == self.title()

    # -- generation --------------------------------------------------------------------------------
    def to_native(self, body: Txt2ImgRequest) -> ImageGenerateRequest:
        checkpoint = body.override_settings.get("sd_model_checkpoint")
        if checkpoint is not None and not self._is_ours(checkpoint):
            raise InvalidPayload.field("override_settings.sd_model_checkpoint",
                                       f"this worker serves {self.title()!r} only")
        scheduler = SAMPLERS[body.sampler]
        if scheduler not in self.image.engine.schedulers:
            raise InvalidPayload.field("sampler_name", f"this model's samplers are "
                                       f"{[s['name'] for s in self.samplers()]}")
        if not body.prompt.strip():
            raise InvalidPayload.field("prompt", "must not be empty")
        return ImageGenerateRequest(
            prompt=body.prompt, negative_prompt=body.negative_prompt or None, width=body.width,
            height=body.height, steps=body.steps, cfg_scale=body.cfg_scale, seed=body.seed,
            num_images=body.num_images, scheduler=scheduler, output="b64_json")  # type: ignore[arg-type]

    async def txt2img(self, body: Txt2ImgRequest, request_id: str) -> dict[str, Any]:
        native = self.to_native(body)
        job = Job(request_id, body.steps, body.num_images)
        self.board.begin(job)
        try:
            result = await self.image.generate(native, request_id, on_progress=job.advance)
        finally:
            self.board.end(request_id)
        return self._answer(body, result)

    def _answer(self, body: Txt2ImgRequest, r: dict[str, Any]) -> dict[str, Any]:
        seeds = [item["seed"] for item in r["images"]]
        infotexts = [GenerationParameters(r["metadata"]["prompt"], r["negative_prompt"], r["steps"], r["scheduler"],
                                          r["cfg_scale"], s, r["width"], r["height"], r["model_used"]).to_text()
                     for s in seeds]
        n = len(seeds)
        info = {
            "prompt": body.prompt, "all_prompts": [body.prompt] * n,
            "negative_prompt": body.negative_prompt, "all_negative_prompts": [body.negative_prompt] * n,
            "seed": seeds[0], "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * n, "subseed_strength": 0,
            "width": r["width"], "height": r["height"], "sampler_name": body.sampler, "cfg_scale": r["cfg_scale"],
            "steps": r["steps"], "batch_size": body.batch_size, "n_iter": body.n_iter, "restore_faces": False,
            "sd_model_name": r["model_used"], "sd_model_hash": None, "seed_resize_from_w": -1,
            "seed_resize_from_h": -1, "denoising_strength": None, "extra_generation_params": {},
            "index_of_first_image": 0, "infotexts": infotexts, "styles": [], "job_timestamp":
            datetime.now().strftime("%Y%m%d%H%M%S"), "clip_skip": 1, "is_using_inpainting_conditioning": False,
            "version": "pureinfer",
            # ours: the proof of what ran
            "request_id": r["request_id"], "generation_time": r["generation_time"], "tokens": r["tokens"],
        }
        images = [item["b64_json"] for item in r["images"]] if body.send_images else []
        return {"images": images, "parameters": body.echo(), "info": json.dumps(info, ensure_ascii=False)}
