"""A1111's txt2img through the gateway's one image path.

A txt2img request becomes the gateway's `GenerateImageRequest` (base64 output) and runs through
`ImageService.generate`, exactly as `/generate-image` does: a healthy image worker, retries,
signed calls, the worker's per-step progress, the audit row (endpoint `a1111/txt2img`). This
module only translates: samplers by name, A1111's seeds and `info` (a JSON string with the
`infotexts`, read from each PNG's own "parameters" chunk), and the progress of the jobs this
gateway runs (`JobBoard`), fed by the image service's progress callback.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from pureinfer.errors import InvalidPayload
from pureinfer.gateway.images.protocol import GenerateImageRequest
from pureinfer.gateway.images.service import ImageService
from pureinfer.gateway.workers.registry import WorkerRegistry
from pureinfer.wire.a1111 import SAMPLER_ALIASES, SAMPLERS, Txt2ImgRequest, check_options, checkpoint_name

ENDPOINT = "a1111/txt2img"


@dataclass
class Job:
    request_id: str
    steps: int
    started: float = field(default_factory=time.monotonic)
    timestamp: str = field(default_factory=lambda: datetime.now().strftime("%Y%m%d%H%M%S"))
    step: int = 0

    def advance(self, step: int, total: int) -> None:
        self.step, self.steps = step, total


@dataclass
class JobBoard:
    """The txt2img jobs in flight through this gateway, oldest first (A1111's progress shape)."""

    jobs: dict[str, Job] = field(default_factory=dict)

    def progress(self) -> dict[str, Any]:
        current = next(iter(self.jobs.values()), None)
        state: dict[str, Any] = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "",
                                 "job_count": len(self.jobs), "job_timestamp": "0", "job_no": 0,
                                 "sampling_step": 0, "sampling_steps": 0}
        if current is None:
            return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None}
        fraction = current.step / current.steps if current.steps else 0.0
        elapsed = time.monotonic() - current.started
        state.update(job=f"txt2img {current.request_id}", job_timestamp=current.timestamp,
                     sampling_step=current.step, sampling_steps=current.steps)
        return {"progress": round(fraction, 4),
                "eta_relative": round(elapsed / fraction - elapsed, 3) if fraction > 0 else 0.0,
                "state": state, "current_image": None, "textinfo": None}


class A1111Gateway:
    def __init__(self, images: ImageService, registry: WorkerRegistry, board: JobBoard) -> None:
        self.images = images
        self.registry = registry
        self.board = board

    # -- catalogue ---------------------------------------------------------------------------------
    def models(self) -> list[str]:
        return sorted({m for w in self.registry.workers.values() if w.serves("image") for m in w.image_models()})

    def sd_models(self) -> list[dict[str, Any]]:
        return [{"title": m, "model_name": m, "hash": None, "sha256": None, "filename": m, "config": None}
                for m in self.models()]

    @staticmethod
    def samplers() -> list[dict[str, Any]]:
        return [{"name": name, "aliases": SAMPLER_ALIASES[name], "options": {}} for name in SAMPLERS]

    def options(self) -> dict[str, Any]:
        models = self.models()
        return {"sd_model_checkpoint": models[0] if models else None, "sd_checkpoint_hash": None,
                "samples_format": "png", "CLIP_stop_at_last_layers": 1, "eta_noise_seed_delta": 0}

    def _is_served(self, checkpoint: Any) -> bool:
        return checkpoint_name(checkpoint) in self.models()

    def set_options(self, options: dict[str, Any]) -> None:
        check_options(options, self.options(), self.models())

    # -- generation --------------------------------------------------------------------------------
    def to_request(self, body: Txt2ImgRequest) -> GenerateImageRequest:
        checkpoint = body.override_settings.get("sd_model_checkpoint")
        if checkpoint is not None and not self._is_served(checkpoint):
            raise InvalidPayload.field("override_settings.sd_model_checkpoint",
                                       f"no image worker serves it; served: {self.models()}")
        fields = {"prompt": body.prompt, "negative_prompt": body.negative_prompt or None, "width": body.width,
                  "height": body.height, "steps": body.steps, "cfg_scale": body.cfg_scale, "seed": body.seed,
                  "num_images": body.num_images, "scheduler": SAMPLERS[body.sampler], "output": "b64_json"}
        try:
            return GenerateImageRequest(**fields)
        except ValidationError as exc:
            names = {"num_images": "batch_size", "scheduler": "sampler_name"}
            problems = [{"field": names.get(str(e["loc"][0]), str(e["loc"][0])) if e["loc"] else "body",
                         "message": e["msg"]} for e in exc.errors()]
            summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise InvalidPayload(f"Invalid request: {summary}", {"fields": problems}) from None

    async def txt2img(self, body: Txt2ImgRequest, request_id: str, caller: str | None) -> dict[str, Any]:
        request = self.to_request(body)
        job = Job(request_id, body.steps)
        self.board.jobs[request_id] = job
        try:
            out = await self.images.generate(request, request_id=request_id, caller_key_id=caller,
                                             endpoint=ENDPOINT, on_progress=job.advance)
        finally:
            self.board.jobs.pop(request_id, None)
        return self._answer(body, out)

    @staticmethod
    def _answer(body: Txt2ImgRequest, out: dict[str, Any]) -> dict[str, Any]:
        images = out["images"]
        seeds = [i["seed"] for i in images]
        pngs = [base64.b64decode(i["b64_json"]) for i in images]
        n = len(seeds)
        md = out.get("execution_metadata") or {}
        info = {
            "prompt": body.prompt, "all_prompts": [body.prompt] * n,
            "negative_prompt": body.negative_prompt, "all_negative_prompts": [body.negative_prompt] * n,
            "seed": seeds[0], "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * n, "subseed_strength": 0,
            "width": out.get("width"), "height": out.get("height"), "sampler_name": body.sampler,
            "cfg_scale": out.get("cfg_scale"), "steps": out.get("steps"), "batch_size": body.batch_size,
            "n_iter": body.n_iter, "restore_faces": False, "sd_model_name": out.get("model_used"), "sd_model_hash": None,
            "seed_resize_from_w": -1, "seed_resize_from_h": -1, "denoising_strength": None,
            "extra_generation_params": {}, "index_of_first_image": 0,
            "infotexts": [_parameters_chunk(p) for p in pngs], "styles": [],
            "job_timestamp": datetime.now().strftime("%Y%m%d%H%M%S"), "clip_skip": 1,
            "is_using_inpainting_conditioning": False, "version": "pureinfer",
            # ours: what ran where
            "request_id": out.get("request_id"), "worker_id": md.get("worker_id"), "attempts": md.get("attempts"),
            "generation_time": out.get("generation_time"),
        }
        return {"images": [i["b64_json"] for i in images] if body.send_images else [], "parameters": body.echo(),
                "info": json.dumps(info, ensure_ascii=False)}


def _parameters_chunk(png: bytes) -> str:
    """The PNG's own A1111 "parameters" text (the worker wrote it); only the header is read."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        return str(img.info.get("parameters", ""))
