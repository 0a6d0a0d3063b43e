"""The chat-template proof: for generated conversations (no system message, unicode, empty
assistant turns, long histories), the token ids the model's forward pass receives are exactly
the tokenization of `tokenizer.apply_chat_template(messages, tokenize=False,
add_generation_prompt=True)`, and `prompt_sha256` is that string's SHA-256."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import torch
from fastapi.testclient import TestClient
from transformers import AutoTokenizer

_SNIPPETS = ["A beautiful sunset", "héllo wörld", "東京の夜景", "🚀✨ emoji only", "", "multi\nline\n\ttext",
             "<|im_start|> looks special but is text", "a" * 300, "Ünïcödé ñ ç ß", "مرحبا بالعالم", " leading space",
             "trailing space ", "quotes \" ' ` and {braces} {{jinja}}"]


def _conversation(rng: random.Random) -> list[dict[str, str]]:
    msgs: list[dict[str, str]] = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": rng.choice(_SNIPPETS)})
    for turn in range(rng.choice([1, 1, 2, 5, 12])):
        msgs.append({"role": "user", "content": rng.choice(_SNIPPETS)})
        if turn < 20 and rng.random() < 0.8:
            msgs.append({"role": "assistant", "content": rng.choice(_SNIPPETS + ["", ""])})
    if msgs[-1]["role"] == "assistant" and rng.random() < 0.5:
        msgs.append({"role": "user", "content": rng.choice(_SNIPPETS)})
    return msgs


def _model_of(client: TestClient) -> torch.nn.Module:
    engine = client.app.state.runtime.text.engines["qwen_instruct"]
    modules = [v for v in vars(engine).values() if isinstance(v, torch.nn.Module)]
    assert modules, "the engine holds its model as an attribute"
    return modules[0]


def test_model_receives_exactly_the_rendered_prompt(client: TestClient, demo_text_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(demo_text_dir)
    model = _model_of(client)
    fed: list[int] = []

    def capture(_module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        fed.extend(ids.reshape(-1).tolist())

    handle = model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        rng = random.Random(20261128)
        for _ in range(25):
            messages = _conversation(rng)
            rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            expected = tok(rendered, add_special_tokens=False)["input_ids"]
            fed.clear()
            r = client.post("/chat", json={"messages": messages, "max_tokens": 3, "min_tokens": 3})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["prompt_sha256"] == hashlib.sha256(rendered.encode("utf-8")).hexdigest()
            assert body["prompt_tokens"] == len(expected)
            # Everything the model saw: the prompt, then its own tokens fed back (not the last one).
            assert fed[: len(expected)] == expected
            assert len(fed) == len(expected) + body["tokens_generated"] - 1
    finally:
        handle.remove()
