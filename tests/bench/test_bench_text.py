"""`pureinfer bench text` on the tiny demo shape: the engine-only path imports no web or settings
package (it must run on a bare GPU machine), and the report carries the fast-path figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BLOCK = ("pydantic", "pydantic_settings", "fastapi", "starlette", "uvicorn", "diffusers", "sqlalchemy", "httpx")

RUN = """
import importlib.abc, json, sys
BLOCK = {block!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError(f"the engine-only bench imported {{name}}")
sys.meta_path.insert(0, Block())
from pureinfer.cli import main
sys.exit(main({argv!r}))
"""


def test_engine_only_bench_imports_no_web_stack(tmp_path: Path) -> None:
    argv = ["bench", "text", "--shape", "tiny", "--paths", "engine", "--no-baselines", "--concurrency", "1,4",
            "--prompt-tokens", "8", "--max-tokens", "6", "--decode-tokens", "12", "--device", "cpu",
            "--cache-dir", str(tmp_path), "--out", str(tmp_path / "text.json")]
    proc = subprocess.run([sys.executable, "-c", RUN.format(block=BLOCK, argv=argv)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "text.json").read_text())
    assert [r["concurrency"] for r in result["runs"]] == [1, 4]
    assert all(r["engine"]["output_tokens"] == r["concurrency"] * 6 for r in result["runs"])
    decode = result["decode_b1"]
    assert decode["output_tokens"] == 12 and decode["weight_bytes"] > 0 and decode["copy_bytes_per_s"] > 0
    assert decode["bandwidth_fraction"] > 0
    assert result["gpu_targets"]["decode_b1_bandwidth_fraction"] == decode["bandwidth_fraction"]
    assert result["config"]["kv_tokens_per_request"] == 2048  # the tiny shape's context, every slot


def test_in_memory_shape_builds_on_the_device() -> None:
    import torch

    from pureinfer.engines.demo.text import build_text_model_in_memory

    model, tokenizer = build_text_model_in_memory("tiny", device="cpu", dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.config.vocab_size == len(tokenizer)
