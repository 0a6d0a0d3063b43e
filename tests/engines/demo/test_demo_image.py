"""The demo builder: a complete SDXL folder, its own CLIP tokenizer, loadable by diffusers."""

from __future__ import annotations

import json
from pathlib import Path

from pureinfer.engines.demo.image import CLIP_MAX_LENGTH, demo_image_ready


def test_builds_a_diffusers_sdxl_folder(image_model_dir: Path) -> None:
    index = json.loads((image_model_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    for part in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"):
        assert (image_model_dir / part).is_dir(), part
    assert index["scheduler"][1] == "EulerDiscreteScheduler"
    assert demo_image_ready(image_model_dir)
    assert not (image_model_dir / "_tokenizer_src").exists()


def test_tokenizer_is_clip_shaped(image_model_dir: Path) -> None:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(image_model_dir / "tokenizer")
    assert tok.model_max_length == CLIP_MAX_LENGTH == 77
    merges = (image_model_dir / "tokenizer" / "merges.txt").read_text().splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) > 100
    ids = tok("A Beautiful sunset, héllo 東京 🚀").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == "a beautiful sunset , héllo 東京 🚀"
    assert len(tok("mountain " * 200, truncation=True).input_ids) == 77


def test_loads_with_from_pretrained(image_model_dir: Path) -> None:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(image_model_dir)
    assert pipe.vae_scale_factor == 8
    assert pipe.text_encoder.config.eos_token_id == pipe.tokenizer.eos_token_id
    assert pipe.unet.config.cross_attention_dim == (pipe.text_encoder.config.hidden_size
                                                    + pipe.text_encoder_2.config.hidden_size)


def test_same_seed_gives_the_same_files(image_model_dir: Path, tmp_path: Path) -> None:
    from pureinfer.engines.demo.image import build_image_model

    again = build_image_model(tmp_path / "again")
    for name in ("tokenizer/vocab.json", "tokenizer/merges.txt", "unet/diffusion_pytorch_model.safetensors"):
        assert (again / name).read_bytes() == (image_model_dir / name).read_bytes(), name


def test_sdxl_shape_has_sdxl_base_parameter_counts(tmp_path: Path) -> None:
    """Built on the meta device (no memory, no weights): the architecture only."""
    from pureinfer.engines.demo.image import build_image_pipeline

    pipe = build_image_pipeline("sdxl", work_dir=tmp_path, device="meta")
    counts = {n: sum(p.numel() for p in getattr(pipe, n).parameters())
              for n in ("unet", "vae", "text_encoder", "text_encoder_2")}
    # The parameter counts of stabilityai/stable-diffusion-xl-base-1.0's components.
    assert counts == {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
                      "text_encoder_2": 694_659_840}
