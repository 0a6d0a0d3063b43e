"""The SDXL engine's tests share the session's running engine (tests/support/image.py)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def engine(image_engine: Any) -> Any:
    return image_engine
