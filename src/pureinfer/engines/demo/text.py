"""Builds a Qwen2-architecture causal LM with random weights and its own tokenizer, offline.

The tokenizer is a byte-level BPE trained here with `tokenizers` on a small synthetic corpus
(so every Unicode string encodes), wrapped as a fast tokenizer with a ChatML chat template of
the same form as Qwen's. Everything is seeded: the same shape gives the same files every time.
Both are written with `save_pretrained`, so the worker loads them with the same
`from_pretrained` code that loads real models.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

# The ChatML layout Qwen2.5 uses, without Qwen's default system message: a demo model has no
# "identity" to inject, and the worker never adds text of its own.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TextShape:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    vocab_size: int | None  # None: exactly the trained tokenizer's size
    tie_word_embeddings: bool
    rope_theta: float = 1_000_000.0


# Published Qwen2.5 configurations (config.json of the Instruct models), random weights.
TEXT_SHAPES: dict[str, TextShape] = {
    "tiny": TextShape(64, 128, 2, 4, 2, 2048, None, True),
    "qwen2.5-0.5b": TextShape(896, 4864, 24, 14, 2, 32768, 151936, True),
    "qwen2.5-7b": TextShape(3584, 18944, 28, 28, 4, 32768, 152064, False),
}

_WORDS = (
    "a the of and to in is it you that he was for on are as with his they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will up other "
    "about out many then them these so some her would make like him into time has look two more write go see "
    "number no way could people my than first water been call who oil its now find long down day did get come "
    "made may part sunset mountain forest castle dragon robot city light golden hour cinematic portrait detailed "
    "painting photo lens bokeh neon rain night ocean sky cloud star galaxy ancient temple garden flower river "
    "fantasy landscape story prompt image style artist masterpiece quality render scene character colour color "
    "héllo wörld café 東京 こんにちは 你好 привет مرحبا 🙂 🚀 ✨"
).split()


def _corpus(n_lines: int = 4000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 16))]
        line = " ".join(words)
        if rng.random() < 0.3:
            line = line.capitalize() + rng.choice([".", "!", "?", ",", ":", ";"])
        if rng.random() < 0.1:
            line += f" {rng.randint(0, 10_000)}"
        lines.append(line)
    return lines


def build_tokenizer(vocab_size: int = 2000):  # -> PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML_TEMPLATE,
        model_max_length=None,
        clean_up_tokenization_spaces=False,
    )


def _config_and_tokenizer(shape: str):  # -> (Qwen2Config, PreTrainedTokenizerFast, GenerationConfig)
    from transformers import GenerationConfig, Qwen2Config

    spec = TEXT_SHAPES[shape]
    tokenizer = build_tokenizer()
    tokenizer.model_max_length = spec.max_position_embeddings
    vocab = spec.vocab_size or len(tokenizer)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        rope_theta=spec.rope_theta,
        tie_word_embeddings=spec.tie_word_embeddings,
        rms_norm_eps=1e-6,
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    return config, tokenizer, GenerationConfig(eos_token_id=[eos, pad], pad_token_id=pad, bos_token_id=pad)


def build_text_model(out_dir: Path, shape: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight Qwen2 model and tokenizer to `out_dir`; returns the directory."""
    import torch
    from transformers import Qwen2ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config, tokenizer, generation_config = _config_and_tokenizer(shape)
    torch.manual_seed(seed)
    with torch.device("cpu"):
        model = Qwen2ForCausalLM(config)
    model.generation_config = generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "PUREINFER_DEMO").write_text(f"shape={shape} seed={seed}\n")
    return out_dir


def build_text_model_in_memory(shape: str, *, device: str, dtype, seed: int = 0):  # -> (model, tokenizer)
    """The same architecture and tokenizer, random weights created directly on `device` in
    `dtype` (for benchmarks of large shapes: nothing is written to disk)."""
    import torch
    from transformers import Qwen2ForCausalLM

    config, tokenizer, generation_config = _config_and_tokenizer(shape)
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config = generation_config
    model.eval().requires_grad_(False)
    return model, tokenizer


def demo_text_ready(out_dir: Path) -> bool:
    return (Path(out_dir) / "PUREINFER_DEMO").exists()
