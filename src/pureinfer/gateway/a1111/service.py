"""A1111's txt2img through the gateway's one image path.

A txt2img request becomes the gateway's `GenerateImageRequest` (base64 output) and runs through
`ImageService.generate`, exactly as `/generate-image` does: a healthy image worker, retries,
signed calls, the worker's per-step progress, the audit row (endpoint `a1111/txt2img`). This
module only translates: samplers by name, A1111's seeds and `info` (a JSON string with the
`infotexts`, read from each PNG's own "parameters" chunk), and the progress of the jobs this
gateway runs (a `JobBoard`, wire/a1111.py), fed by the image service's progress callback.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from pydantic import ValidationError

from pureinfer.errors import InvalidPayload
from pureinfer.gateway.images.protocol import GenerateImageRequest
from pureinfer.gateway.images.service import ImageService
from pureinfer.gateway.workers.registry import WorkerRegistry
from pureinfer.wire import a1111 as wire

ENDPOINT = "a1111/txt2img"


class A1111Gateway:
    def __init__(self, images: ImageService, registry: WorkerRegistry, board: wire.JobBoard) -> None:
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
        return [{"name": name, "aliases": wire.SAMPLER_ALIASES[name], "options": {}} for name in wire.SAMPLERS]

    def options(self) -> dict[str, Any]:
        models = self.models()
        return {"sd_model_checkpoint": models[0] if models else None, "sd_checkpoint_hash": None,
                "samples_format": "png", "CLIP_stop_at_last_layers": 1, "eta_noise_seed_delta": 0}

    def _is_served(self, checkpoint: Any) -> bool:
        return wire.checkpoint_name(checkpoint) in self.models()

    def set_options(self, options: dict[str, Any]) -> None:
        wire.check_options(options, self.options(), self.models())

    # -- generation --------------------------------------------------------------------------------
    def to_request(self, body: wire.Txt2ImgRequest) -> GenerateImageRequest:
        checkpoint = body.override_settings.get("sd_model_checkpoint")
        if checkpoint is not None and not self._is_served(checkpoint):
            raise InvalidPayload.field("override_settings.sd_model_checkpoint",
                                       f"no image worker serves it; served: {self.models()}")
        fields = {"prompt": body.prompt, "negative_prompt": body.negative_prompt or None, "width": body.width,
                  "height": body.height, "steps": body.steps, "cfg_scale": body.cfg_scale, "seed": body.seed,
                  "num_images": body.num_images, "scheduler": wire.SAMPLERS[body.sampler], "output": "b64_json"}
        try:
            return GenerateImageRequest(**fields)
        except ValidationError as exc:
            names = {"num_images": "batch_size", "scheduler": "sampler_name"}
            problems = [{"field": names.get(str(e["loc"][0]), str(e["loc"][0])) if e["loc"] else "body",
                         "message": e["msg"]} for e in exc.errors()]
            summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            raise InvalidPayload(f"Invalid request: {summary}", {"fields": problems}) from None

    async def txt2img(self, body: wire.Txt2ImgRequest, request_id: str, caller: str | None) -> dict[str, Any]:
        request = self.to_request(body)
        job = wire.Job(request_id, body.steps)
        self.board.begin(job)
        try:
            out = await self.images.generate(request, request_id=request_id, caller_key_id=caller,
                                             endpoint=ENDPOINT, on_progress=job.advance)
        finally:
            self.board.end(request_id)
        return self._answer(body, out)

    @staticmethod
    def _answer(body: wire.Txt2ImgRequest, out: dict[str, Any]) -> dict[str, Any]:
        images = out["images"]
        infotexts = [_parameters_chunk(base64.b64decode(i["b64_json"])) for i in images]
        md = out.get("execution_metadata") or {}
        return wire.txt2img_response(
            body, images, infotexts, width=out.get("width"), height=out.get("height"),
            cfg_scale=out.get("cfg_scale"), steps=out.get("steps"), model_used=out.get("model_used"),
            # ours: what ran where
            ours={"request_id": out.get("request_id"), "worker_id": md.get("worker_id"),
                  "attempts": md.get("attempts"), "generation_time": out.get("generation_time")})


def _parameters_chunk(png: bytes) -> str:
    """The PNG's own A1111 "parameters" text (the worker wrote it); only the header is read."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        return str(img.info.get("parameters", ""))
