"""Builds an SDXL pipeline with random weights and its own CLIP tokenizer, offline.

Two shapes: ``tiny`` (a few MB, builds and runs in seconds on a CPU; what tests and ``--demo``
use) and ``sdxl`` (the published SDXL-base architecture, ~3.5 B random parameters, for GPU
benchmarks only; never built in tests).

The CLIP tokenizer is written here: the 256-symbol byte alphabet of CLIP (and its ``</w>``
end-of-word variants), merges learned by a few lines of BPE on a small word list, and CLIP's two
special tokens. It is loaded by the stock ``CLIPTokenizer`` with ``model_max_length=77``, so
prompts are counted and truncated exactly as with the real SDXL tokenizers. Everything is seeded:
the same shape gives the same files every time. All parts are written with ``save_pretrained``,
so the worker loads them with the same ``from_pretrained`` code that loads real models.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIP_MAX_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

_PROMPT_WORDS = ["a", "an", "the", "of", "and", "in", "on", "with", "at", "by", "from", "for", "to", "under", "over", "beautiful", "sunset", "mountains", "mountain", "photo", "photograph", "portrait", "painting", "illustration", "render", "of", "cat", "dog", "bird", "horse", "dragon", "robot", "castle", "city", "street", "forest", "river", "ocean", "lake", "sky", "clouds", "stars", "galaxy", "night", "day", "morning", "golden", "hour", "light", "lighting", "cinematic", "dramatic", "soft", "volumetric", "neon", "rain", "snow", "fog", "detailed", "highly", "intricate", "masterpiece", "best", "quality", "low", "quality", "blurry", "ugly", "deformed", "sharp", "focus", "bokeh", "lens", "wide", "angle", "close", "up", "studio", "artstation", "trending", "concept", "art", "digital", "oil", "watercolor", "anime", "realistic", "photorealistic", "hyper", "ultra", "4k", "8k", "hdr", "red", "orange", "yellow", "green", "blue", "purple", "black", "white", "colorful", "vibrant", "dark", "bright", "ancient", "futuristic", "fantasy", "science", "fiction", "landscape", "scene", "character", "woman", "man", "girl", "boy", "old", "young", "smiling", "standing", "sitting", "running", "flying", "garden", "flower", "flowers", "tree", "trees", "temple", "ruins", "spaceship", "space", "planet", "moon", "sun", "fire", "water", "ice", "stone", "glass"]


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _learn_merges(words: list[str], num_merges: int) -> list[tuple[str, str]]:
    """Plain BPE over words ending in ``</w>`` (CLIP's word-final marker); deterministic."""
    vocab: Counter[tuple[str, ...]] = Counter()
    for w in words:
        vocab[tuple(w[:-1]) + (w[-1] + "</w>",)] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(num_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, freq in vocab.items():
            for a, b in zip(word, word[1:], strict=False):
                pairs[(a, b)] += freq
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        merged: Counter[tuple[str, ...]] = Counter()
        for word, freq in vocab.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        vocab = merged
    return merges


def write_clip_tokenizer_files(out_dir: Path, num_merges: int = 400) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` in CLIP's format; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet]
    words = [w for w in _PROMPT_WORDS if w.isascii()]
    merges = _learn_merges(words * 3 + sorted(set(words)), num_merges)
    tokens += [a + b for a, b in merges]
    tokens += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    vocab_path, merges_path = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False))
    merges_path.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return vocab_path, merges_path


def build_clip_tokenizer(work_dir: Path, pad_token: str = EOS):  # -> CLIPTokenizer
    from transformers import CLIPTokenizer

    vocab_path, merges_path = write_clip_tokenizer_files(work_dir)
    return CLIPTokenizer(
        vocab=str(vocab_path),
        merges=str(merges_path),
        pad_token=pad_token,
        model_max_length=CLIP_MAX_LENGTH,
    )


@dataclass(frozen=True)
class ImageShape:
    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    text_encoder_2: dict[str, Any]
    text_vocab_size: int | None  # None: exactly the tokenizer's size


_TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                  hidden_act="gelu", projection_dim=32)

IMAGE_SHAPES: dict[str, ImageShape] = {
    # The layout of diffusers' own SDXL test components, with a VAE that downsamples by 8 like
    # the real one, so pixel sizes map to latent sizes as in SDXL.
    "tiny": ImageShape(
        unet=dict(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
            projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64,
        ),
        # Narrow full-resolution layers and no mid-block attention: at 512 px the decoder would
        # otherwise cost more than the whole denoising loop on a CPU.
        vae=dict(
            block_out_channels=(8, 16, 32, 32), norm_num_groups=8, in_channels=3, out_channels=3,
            layers_per_block=1, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, sample_size=64,
            scaling_factor=0.13025, mid_block_add_attention=False,
        ),
        text_encoder=_TINY_TEXT,
        text_encoder_2=_TINY_TEXT,
        text_vocab_size=None,
    ),
    # stabilityai/stable-diffusion-xl-base-1.0: unet/, vae/, text_encoder/, text_encoder_2/ configs.
    "sdxl": ImageShape(
        unet=dict(
            block_out_channels=(320, 640, 1280), layers_per_block=2, sample_size=128, in_channels=4,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(5, 10, 20), use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=256, transformer_layers_per_block=(1, 2, 10),
            projection_class_embeddings_input_dim=2816, cross_attention_dim=2048,
        ),
        vae=dict(
            block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3, layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4, sample_size=1024, scaling_factor=0.13025, force_upcast=True,
        ),
        text_encoder=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                          num_attention_heads=12, hidden_act="quick_gelu", projection_dim=768),
        text_encoder_2=dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                            num_attention_heads=20, hidden_act="gelu", projection_dim=1280),
        text_vocab_size=49408,
    ),
}

# SDXL-base's scheduler_config.json.
SCHEDULER_CONFIG = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    steps_offset=1, timestep_spacing="leading", prediction_type="epsilon", interpolation_type="linear",
    use_karras_sigmas=False,
)


def build_image_pipeline(shape: str = "tiny", seed: int = 0, *, work_dir: Path, device: str = "cpu",
                         dtype: Any = None):  # -> StableDiffusionXLPipeline
    """An in-memory random-weight SDXL pipeline; `work_dir` receives the tokenizer files."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    spec = IMAGE_SHAPES[shape]
    tokenizer = build_clip_tokenizer(Path(work_dir) / "_tokenizer_src")
    tokenizer_2 = build_clip_tokenizer(Path(work_dir) / "_tokenizer_src")
    bos, eos = tokenizer.convert_tokens_to_ids(BOS), tokenizer.convert_tokens_to_ids(EOS)
    vocab = spec.text_vocab_size or len(tokenizer)

    def text_config(kw: dict[str, Any]) -> CLIPTextConfig:
        return CLIPTextConfig(vocab_size=vocab, max_position_embeddings=CLIP_MAX_LENGTH, bos_token_id=bos,
                              eos_token_id=eos, pad_token_id=eos, layer_norm_eps=1e-5, **kw)

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**spec.unet)
        vae = AutoencoderKL(**spec.vae)
        text_encoder = CLIPTextModel(text_config(spec.text_encoder))
        text_encoder_2 = CLIPTextModelWithProjection(text_config(spec.text_encoder_2))
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer_2, unet=unet, scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
    )
    if dtype is not None and dtype != torch.float32:  # built in fp32; cast only when asked
        pipe.to(dtype=dtype)  # type: ignore[attr-defined]
    return pipe


def build_image_model(out_dir: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight SDXL pipeline (diffusers folder layout) to `out_dir`; returns it."""
    import shutil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pipe = build_image_pipeline(shape, seed, work_dir=out_dir)
    pipe.save_pretrained(out_dir)
    # transformers 5 saves tokenizer.json only; the classic CLIP files ride along for other readers.
    for sub in ("tokenizer", "tokenizer_2"):
        for name in ("vocab.json", "merges.txt"):
            shutil.copyfile(out_dir / "_tokenizer_src" / name, out_dir / sub / name)
    shutil.rmtree(out_dir / "_tokenizer_src", ignore_errors=True)
    (out_dir / "PUREINFER_DEMO").write_text(f"shape={shape} seed={seed}\n")
    return out_dir


def demo_image_ready(out_dir: Path) -> bool:
    return (Path(out_dir) / "PUREINFER_DEMO").exists()
