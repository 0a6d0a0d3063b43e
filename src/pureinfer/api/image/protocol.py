"""Wire models of the image surface (the native `/generate` and OpenAI's images API).

Static rules live here (ranges, names) and so do the defaults, once, on `ImageGenerateRequest`:
OpenAI's request converts itself into one. Rules that depend on settings or on the model (size
bounds, CLIP token counts) are checked once by `ImageServing.validate` at admission. Imports
neither torch nor FastAPI.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pureinfer.api.native.protocol import ARCHITECTURE
from pureinfer.engines.base import ImageRequest

Scheduler = Literal["euler", "euler_a", "dpmpp_2m", "ddim"]
MAX_SEED = 2**32 - 1
MAX_IMAGES = 8

Steps = Annotated[int, Field(ge=1, le=150)]
CfgScale = Annotated[float, Field(ge=0.0, le=30.0)]
Seed = Annotated[int, Field(ge=-1, le=MAX_SEED, description="-1 draws one; image i uses seed + i")]


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class ImageGenerateRequest(BaseModel):
    """`POST /generate` for images. The seed's fields plus num_images, scheduler, output, truncate."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(description="What to draw; at most 77 CLIP tokens (BOS/EOS included) unless truncate")
    negative_prompt: str | None = Field(default=None, description="What to steer away from")
    width: int | None = Field(default=None, description="Pixels, a multiple of 8 within the worker's bounds "
                              "(default 1024, or the largest allowed size below it)")
    height: int | None = Field(default=None, description="Pixels, like width")
    steps: Steps = 20
    cfg_scale: CfgScale = 7.5
    seed: Seed = -1
    num_images: int = Field(default=1, ge=1, le=MAX_IMAGES)
    scheduler: Scheduler = "euler"
    output: Literal["url", "b64_json"] = "url"
    truncate: bool = Field(default=False, description="Cut prompts to the CLIP window instead of refusing "
                           "them; the response says how many tokens were dropped")
    stream: bool = Field(default=False, description="Answer with Server-Sent Events: "
                         '{"progress": {"step", "total"}, "request_id"} after each denoising step, then one '
                         "event with the whole response, then [DONE]")

    _prompt = field_validator("prompt")(_non_blank)

    def to_engine_request(self, request_id: str, *, seed: int, width: int, height: int,
                          deadline: float | None) -> ImageRequest:
        """The engine's request, once serving has settled the seed and size and checked the limits."""
        return ImageRequest(
            request_id=request_id, prompt=self.prompt, negative_prompt=self.negative_prompt or "",
            width=width, height=height, steps=self.steps, cfg_scale=self.cfg_scale, seed=seed,
            num_images=self.num_images, scheduler=self.scheduler, deadline=deadline,
        )


class ImageItem(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    thumbnail_url: str | None = None
    seed: int
    width: int
    height: int


class ImageMetadata(BaseModel):
    prompt: str
    seed: int
    steps: int
    cfg_scale: float


class TokenCounts(BaseModel):
    """CLIP tokens (BOS/EOS included) before truncation, and how many truncation dropped."""

    prompt_tokens: int
    negative_prompt_tokens: int
    max_tokens: int
    prompt_tokens_dropped: int = 0
    negative_prompt_tokens_dropped: int = 0


class ImageExecutionMetadata(BaseModel):
    """The seed's `execution_metadata` (worker_type, architecture) and what reproduces and
    explains an image run."""

    worker_type: Literal["image"] = "image"  # also on a role-`all` worker: the type that served it
    architecture: str = ARCHITECTURE
    model_used: str
    seeds: list[int] = Field(description="the seed of each image, in order (image i: seed + i)")
    num_images: int
    batch_size: int = Field(description="images in the pipeline call that made these (shared with other requests)")
    queue_time: float = Field(description="seconds waiting for a batch slot")
    denoise_time: float = Field(description="seconds of the pipeline call")
    device: str | None = None


class ImageGenerateResponse(BaseModel):
    success: Literal[True] = True
    image_url: str | None = Field(description="URL of the first image (null with output=b64_json)")
    thumbnail_url: str | None = None
    metadata: ImageMetadata
    images: list[ImageItem]
    negative_prompt: str
    scheduler: Scheduler
    width: int
    height: int
    steps: int
    cfg_scale: float
    model_used: str
    generation_time: float
    tokens: TokenCounts
    request_id: str
    execution_metadata: ImageExecutionMetadata


# --- OpenAI: POST /v1/images/generations --------------------------------------------------------

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


class OpenAIImageRequest(BaseModel):
    """OpenAI's images API; `seed` and the SDXL knobs below are extensions (vLLM style), whose
    defaults are the native request's."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    model: str | None = None  # accepted for client compatibility; the worker serves one image model
    n: int = Field(default=1, ge=1, le=MAX_IMAGES)
    size: str | None = Field(default=None, description='"WxH", e.g. "1024x1024"')
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = None
    seed: Seed | None = None
    negative_prompt: str | None = None
    steps: Steps | None = None
    cfg_scale: CfgScale | None = None
    scheduler: Scheduler | None = None

    _prompt = field_validator("prompt")(_non_blank)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and not _SIZE.match(value):
            raise ValueError('must look like "1024x1024" (width x height in pixels)')
        return value

    def to_generate_request(self) -> ImageGenerateRequest:
        width = height = None
        if self.size is not None:
            w, h = self.size.split("x")
            width, height = int(w), int(h)
        extensions: dict[str, Any] = {"seed": self.seed, "steps": self.steps, "cfg_scale": self.cfg_scale,
                                      "scheduler": self.scheduler}
        return ImageGenerateRequest(
            prompt=self.prompt, negative_prompt=self.negative_prompt, width=width, height=height,
            num_images=self.n, output=self.response_format,
            **{k: v for k, v in extensions.items() if v is not None},
        )


class OpenAIImage(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]
