"""Wire models of the gateway's image endpoints.

`POST /generate-image` takes the image worker's own fields (api/image/protocol.py, restated here:
the gateway imports nothing of the worker's) plus `enhance`, which runs the prompt through the
gateway's enhance-prompt service first. `POST /v1/images/generations` is OpenAI's shape with the
same extensions; it converts itself into a `GenerateImageRequest`, so the service sees one type.

Static rules (ranges, names) are checked here, once; what depends on the worker (size bounds, its
CLIP window) is the worker's to check, and its INVALID_PAYLOAD or TOKEN_LIMIT_EXCEEDED passes
through unchanged.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from pureinfer.gateway.bounds import StoredText

Scheduler = Literal["euler", "euler_a", "dpmpp_2m", "ddim"]
MAX_SEED = 2**32 - 1  # the worker's range
MAX_IMAGES = 8
MAX_PROMPT_CHARS = 20_000  # as /enhance-prompt; the worker counts CLIP tokens

Steps = Annotated[int, Field(ge=1, le=150)]
CfgScale = Annotated[float, Field(ge=0.0, le=30.0)]
Seed = Annotated[int, Field(ge=-1, le=MAX_SEED, description="-1 draws one; image i uses seed + i")]
Pixels = Annotated[int, Field(ge=8, le=8192, multiple_of=8, description="pixels, within the worker's bounds")]
Prompt = Annotated[StoredText, Field(min_length=1, max_length=MAX_PROMPT_CHARS)]


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class EnhanceOptions(BaseModel):
    """How `enhance: true` picks its template (the image enhancement templates by default)."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    content_mode: Literal["sfw", "nsfw"] = "sfw"
    enhancer_model: str | None = Field(None, min_length=1, max_length=100,
                                       validation_alias=AliasChoices("enhancer_model", "selectedModel"),
                                       description="also selectedModel; default: the gateway's")
    target_model: str = Field("sdxl", min_length=1, max_length=100)


class GenerateImageRequest(BaseModel):
    """`POST /generate-image`: the image worker's fields, plus `enhance`."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    negative_prompt: StoredText | None = Field(None, max_length=MAX_PROMPT_CHARS)
    width: Pixels | None = None
    height: Pixels | None = None
    steps: Steps = 20
    cfg_scale: CfgScale = 7.5
    seed: Seed = -1
    num_images: int = Field(1, ge=1, le=MAX_IMAGES)
    scheduler: Scheduler = "euler"
    output: Literal["url", "b64_json"] = "url"
    truncate: bool | None = Field(None, description="cut prompts to the CLIP window instead of refusing them; "
                                  "default: false, or true with enhance (the caller did not write that prompt)")
    enhance: bool = Field(False, description="run the prompt through /enhance-prompt first; the response "
                          "reports the original and the enhanced prompt")
    enhance_options: EnhanceOptions = Field(default_factory=EnhanceOptions)

    _prompt = field_validator("prompt")(_non_blank)

    def worker_payload(self, prompt: str) -> dict[str, Any]:
        """The body of the worker's image `/generate` (`prompt`: the one to draw, maybe enhanced).
        `steps` is always sent: an image field, so a role-`all` worker takes it for an image."""
        payload = self.model_dump(exclude={"enhance", "enhance_options", "truncate", "prompt"}, exclude_none=True)
        payload["prompt"] = prompt
        payload["truncate"] = self.truncate if self.truncate is not None else self.enhance
        return payload

    def parameters(self) -> dict[str, Any]:
        """What the audit row keeps of the request (the prompts go their own way)."""
        return {"width": self.width, "height": self.height, "steps": self.steps, "cfg_scale": self.cfg_scale,
                "sampler": self.scheduler, "num_images": self.num_images, "seed": self.seed,
                "output": self.output, "truncate": self.truncate, "enhance": self.enhance}


# --- OpenAI: POST /v1/images/generations --------------------------------------------------------

_SIZE = re.compile(r"^(\d{1,4})x(\d{1,4})$")


class OpenAIImageRequest(BaseModel):
    """OpenAI's images API; `seed`, the SDXL knobs and `enhance` are extensions."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompt
    model: str | None = Field(None, max_length=200, description="accepted for client compatibility")
    n: int = Field(1, ge=1, le=MAX_IMAGES)
    size: str | None = Field(None, description='"WxH", e.g. "1024x1024"')
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = Field(None, max_length=200)
    seed: Seed | None = None
    negative_prompt: StoredText | None = Field(None, max_length=MAX_PROMPT_CHARS)
    steps: Steps | None = None
    cfg_scale: CfgScale | None = None
    scheduler: Scheduler | None = None
    enhance: bool = False

    _prompt = field_validator("prompt")(_non_blank)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is None:
            return value
        m = _SIZE.match(value)
        if not m or any(int(v) % 8 or not 8 <= int(v) <= 8192 for v in m.groups()):
            raise ValueError('must look like "1024x1024" (width x height, multiples of 8)')
        return value

    def to_generate_request(self) -> GenerateImageRequest:
        width = height = None
        if self.size is not None:
            w, h = self.size.split("x")
            width, height = int(w), int(h)
        extensions = {"seed": self.seed, "steps": self.steps, "cfg_scale": self.cfg_scale,
                      "scheduler": self.scheduler}
        return GenerateImageRequest(
            prompt=self.prompt, negative_prompt=self.negative_prompt, width=width, height=height,
            num_images=self.n, output=self.response_format, enhance=self.enhance,
            **{k: v for k, v in extensions.items() if v is not None},
        )


class OpenAIImage(BaseModel):
    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = Field(None, description="the enhanced prompt, with enhance")


class OpenAIImagesResponse(BaseModel):
    created: int
    data: list[OpenAIImage]


# --- Responses ----------------------------------------------------------------------------------

class Enhancement(BaseModel):
    """What `enhance: true` did: the template behind it and the enhance-prompt request's own id
    (its audit row)."""

    enhanced_prompt: str
    strategy: str
    template_name: str
    template_version: int
    fallback_level: int
    worker_id: str
    request_id: str
    generation_time: float | None = None


class GenerateImageResponse(BaseModel):
    """The image worker's response (the seed's image shape: success, image_url, metadata, ...,
    execution_metadata) with the gateway's additions: both prompts, the enhancement, the worker
    and attempts in execution_metadata, and the gateway's request id."""

    model_config = ConfigDict(extra="allow")

    success: Literal[True] = True
    image_url: str | None
    images: list[dict[str, Any]]
    original_prompt: str
    prompt_used: str = Field(description="the prompt the worker drew: the enhanced one with enhance")
    enhancement: Enhancement | None = None
    execution_metadata: dict[str, Any] = Field(
        description="the worker's (worker_type, architecture, model_used, seeds, batch_size, queue_time, "
                    "denoise_time) plus worker_id, attempts and gateway_latency_ms")
    request_id: str
