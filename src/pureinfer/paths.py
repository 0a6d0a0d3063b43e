"""Where the product keeps its files by default (no dependencies: benchmarks on a bare GPU
machine import it without the settings' pydantic)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pureinfer"
