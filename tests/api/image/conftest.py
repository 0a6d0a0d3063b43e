"""The image surface's tests run on the session's image serving (tests/support/image.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.image import build_app


@pytest.fixture(scope="session")
def engine(image_engine: Any) -> Any:
    return image_engine


@pytest.fixture(scope="session")
def serving(image_serving: Any) -> Any:
    return image_serving


@pytest.fixture(scope="session")
def client(image_serving: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(build_app(image_serving)) as c:
        yield c
