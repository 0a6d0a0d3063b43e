"""The demo models `--demo` serves: built once into the cache directory, offline, in seconds.

Several processes may start at once (tests, `pureinfer serve`): a file lock serialises the build,
and each model is built in a temporary folder and renamed into place, so a reader never sees a
half-written model.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def _build_atomically(target: Path, build: Callable[[Path], object]) -> None:
    if (target / "PUREINFER_DEMO").exists():
        return
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        (tmp / "PUREINFER_DEMO").touch()
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_demo_models(root: Path, text: bool = True, image: bool = False, *,
                       text_shape: str = "tiny", image_shape: str = "tiny") -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if text:
            from pureinfer.engines.demo.text import build_text_model

            _build_atomically(root / "text", lambda d: build_text_model(d, text_shape))
        if image:
            from pureinfer.engines.demo.image import build_image_model

            _build_atomically(root / "image", lambda d: build_image_model(d, image_shape))
    return root
