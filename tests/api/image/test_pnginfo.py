"""A1111 "parameters" text: written into PNGs and read back."""

from __future__ import annotations

from PIL import Image

from pureinfer.api.image.pnginfo import GenerationParameters, encode_png, encode_thumbnail, read_parameters


def test_round_trip_with_awkward_values() -> None:
    p = GenerationParameters(prompt="a castle, dusk: moody\nsecond line", negative_prompt='bad "hands", blurry',
                             steps=30, scheduler="dpmpp_2m", cfg_scale=6.5, seed=4294967295, width=1024,
                             height=768, model="models/my,model")
    text = p.to_text()
    assert text.splitlines()[-1] == ('Steps: 30, Sampler: DPM++ 2M, CFG scale: 6.5, Seed: 4294967295, '
                                     'Size: 1024x768, Model: "models/my,model"')
    assert "Negative prompt: bad \"hands\", blurry" in text
    assert GenerationParameters.from_text(text) == p


def test_a1111_text_parses() -> None:
    text = ("masterpiece, a cat\nNegative prompt: lowres\n"
            "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model hash: abc, Model: sdxl")
    p = GenerationParameters.from_text(text)
    assert (p.prompt, p.negative_prompt, p.scheduler, p.cfg_scale, p.seed, p.width, p.model) == (
        "masterpiece, a cat", "lowres", "euler_a", 7.0, 42, 512, "sdxl")


def test_png_chunk_and_thumbnail() -> None:
    import io

    image = Image.new("RGB", (512, 256), (200, 10, 10))
    p = GenerationParameters("東京の夜 🚀", "", 4, "euler", 7.0, 1, 512, 256, "demo")
    png = encode_png(image, p)
    assert png.startswith(b"\x89PNG")
    assert read_parameters(png) == p
    assert "Negative prompt" not in p.to_text()  # omitted when empty, as A1111 does
    thumb = Image.open(io.BytesIO(encode_thumbnail(image)))
    assert thumb.format == "WEBP" and thumb.size == (256, 128)
