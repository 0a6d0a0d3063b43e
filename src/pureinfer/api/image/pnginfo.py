"""Generation parameters inside the files we write, in AUTOMATIC1111's "parameters" format.

PNG text chunk ``parameters``::

    a beautiful sunset over mountains
    Negative prompt: blurry, low quality
    Steps: 20, Sampler: Euler, CFG scale: 7.5, Seed: 12345, Size: 1024x1024, Model: sdxl-base

The last line holds ``key: value`` pairs; a value with a comma, colon or quote is JSON-quoted (as
A1111 does). Tools that read A1111 images (civitai, "PNG Info" tabs) read ours. Written by hand:
the format is a convention of one application, with no library that owns it.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

# Our scheduler names -> A1111's sampler names, and back.
SAMPLER_NAMES = {"euler": "Euler", "euler_a": "Euler a", "dpmpp_2m": "DPM++ 2M", "ddim": "DDIM"}
_SCHEDULERS = {v: k for k, v in SAMPLER_NAMES.items()}
_PAIR = re.compile(r'\s*([\w][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


@dataclass(frozen=True, slots=True)
class GenerationParameters:
    prompt: str
    negative_prompt: str
    steps: int
    scheduler: str
    cfg_scale: float
    seed: int
    width: int
    height: int
    model: str

    def to_text(self) -> str:
        pairs = {
            "Steps": self.steps, "Sampler": SAMPLER_NAMES.get(self.scheduler, self.scheduler),
            "CFG scale": _number(self.cfg_scale), "Seed": self.seed, "Size": f"{self.width}x{self.height}",
            "Model": self.model,
        }
        lines = [self.prompt]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        lines.append(", ".join(f"{k}: {_quote(str(v))}" for k, v in pairs.items()))
        return "\n".join(lines)

    @classmethod
    def from_text(cls, text: str) -> GenerationParameters:
        *head, last = text.split("\n")
        pairs = {m.group(1): _unquote(m.group(2).strip()) for m in _PAIR.finditer(last)}
        prompt_lines: list[str] = []
        negative_lines: list[str] = []
        target = "prompt"
        for line in head:
            if target == "prompt" and line.startswith("Negative prompt:"):
                target, line = "negative", line[len("Negative prompt:"):].lstrip(" ")
            (prompt_lines if target == "prompt" else negative_lines).append(line)
        width, _, height = pairs["Size"].partition("x")
        return cls(
            prompt="\n".join(prompt_lines), negative_prompt="\n".join(negative_lines),
            steps=int(pairs["Steps"]), scheduler=_SCHEDULERS.get(pairs["Sampler"], pairs["Sampler"]),
            cfg_scale=float(pairs["CFG scale"]), seed=int(pairs["Seed"]), width=int(width),
            height=int(height), model=pairs.get("Model", ""),
        )


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ',:"\n') else value


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value
    return value


def encode_png(image: Any, params: GenerationParameters) -> bytes:
    """PNG bytes of a PIL image with the ``parameters`` text chunk (iTXt when not Latin-1)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", params.to_text())
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def encode_thumbnail(image: Any, size: int = 256) -> bytes:
    """A WEBP preview whose longer side is at most `size` pixels."""
    thumb = image.copy()
    thumb.thumbnail((size, size))
    buf = io.BytesIO()
    thumb.save(buf, format="WEBP", quality=80)
    return buf.getvalue()


def read_parameters(png: bytes) -> GenerationParameters:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        return GenerationParameters.from_text(img.info["parameters"])
