"""The bridge between A1111's wire shapes and the worker's one image path (`ImageServing`).

`txt2img` builds the native `ImageGenerateRequest` (base64 output) and runs it through
`ImageServing.generate`: the same permit, validation (size bounds, CLIP tokens), engine, PNG
encoding with A1111's "parameters" chunk. This module only translates: samplers by name, seeds
as A1111 reports them (`all_seeds`), `info` as the JSON string A1111 returns, and the progress
of the jobs it runs (a `JobBoard`, wire/a1111.py).
"""

from __future__ import annotations

from typing import Any

from pureinfer.api.image.pnginfo import GenerationParameters
from pureinfer.api.image.protocol import ImageGenerateRequest
from pureinfer.api.image.serving import ImageServing
from pureinfer.errors import InvalidPayload
from pureinfer.wire import a1111 as wire


class A1111Serving:
    def __init__(self, image: ImageServing, board: wire.JobBoard) -> None:
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
        return [{"name": name, "aliases": wire.SAMPLER_ALIASES[name], "options": {}}
                for name, scheduler in wire.SAMPLERS.items() if scheduler in ours]

    def options(self) -> dict[str, Any]:
        """The few A1111 settings that mean something here (read-only but the checkpoint)."""
        return {"sd_model_checkpoint": self.title(), "sd_checkpoint_hash": None, "samples_format": "png",
                "CLIP_stop_at_last_layers": 1, "eta_noise_seed_delta": 0}

    def set_options(self, options: dict[str, Any]) -> None:
        wire.check_options(options, self.options(), [self.title()])

    def _is_ours(self, checkpoint: Any) -> bool:
        return wire.checkpoint_name(checkpoint) == self.title()

    # -- generation --------------------------------------------------------------------------------
    def to_native(self, body: wire.Txt2ImgRequest) -> ImageGenerateRequest:
        checkpoint = body.override_settings.get("sd_model_checkpoint")
        if checkpoint is not None and not self._is_ours(checkpoint):
            raise InvalidPayload.field("override_settings.sd_model_checkpoint",
                                       f"this worker serves {self.title()!r} only")
        scheduler = wire.SAMPLERS[body.sampler]
        if scheduler not in self.image.engine.schedulers:
            raise InvalidPayload.field("sampler_name", f"this model's samplers are "
                                       f"{[s['name'] for s in self.samplers()]}")
        if not body.prompt.strip():
            raise InvalidPayload.field("prompt", "must not be empty")
        return ImageGenerateRequest(
            prompt=body.prompt, negative_prompt=body.negative_prompt or None, width=body.width,
            height=body.height, steps=body.steps, cfg_scale=body.cfg_scale, seed=body.seed,
            num_images=body.num_images, scheduler=scheduler, output="b64_json")  # type: ignore[arg-type]

    async def txt2img(self, body: wire.Txt2ImgRequest, request_id: str) -> dict[str, Any]:
        native = self.to_native(body)
        job = wire.Job(request_id, body.steps)
        self.board.begin(job)
        try:
            result = await self.image.generate(native, request_id, on_progress=job.advance)
        finally:
            self.board.end(request_id)
        return self._answer(body, result)

    @staticmethod
    def _answer(body: wire.Txt2ImgRequest, r: dict[str, Any]) -> dict[str, Any]:
        infotexts = [GenerationParameters(r["metadata"]["prompt"], r["negative_prompt"], r["steps"], r["scheduler"],
                                          r["cfg_scale"], item["seed"], r["width"], r["height"],
                                          r["model_used"]).to_text()
                     for item in r["images"]]
        return wire.txt2img_response(
            body, r["images"], infotexts, width=r["width"], height=r["height"], cfg_scale=r["cfg_scale"],
            steps=r["steps"], model_used=r["model_used"],
            # ours: the proof of what ran
            ours={"request_id": r["request_id"], "generation_time": r["generation_time"], "tokens": r["tokens"]})
