from __future__ import annotations

import pytest

from pureinfer.errors import InvalidPayload
from pureinfer.worker.generate_dispatch import classify


@pytest.mark.parametrize(("body", "kind"), [
    ({"messages": [{"role": "user", "content": "x"}]}, "text"),
    ({"prompt": "x", "max_tokens": 5}, "text"),
    ({"prompt": "x", "seed": 3, "temperature": 0.1}, "text"),
    ({"prompt": "x", "width": 64}, "image"),
    ({"prompt": "x", "steps": 2, "seed": 1}, "image"),
    ({"prompt": "x", "negative_prompt": "blurry"}, "image"),
    ({"prompt": "x", "stream": True}, "text"),  # as before images could stream
    ({"prompt": "x", "max_tokens": 5, "stream": True}, "text"),
    ({"prompt": "x", "steps": 2, "stream": True}, "image"),  # stream goes with the other fields
])
def test_rule(body: dict, kind: str) -> None:
    assert classify(body) == kind


@pytest.mark.parametrize("body", [{"prompt": "x"}, {"prompt": "x", "seed": 1},
                                  {"messages": [], "width": 64}, {"prompt": "x", "max_tokens": 5, "steps": 3}, []])
def test_ambiguous_or_not_an_object(body) -> None:
    with pytest.raises(InvalidPayload) as info:
        classify(body)
    assert info.value.details["fields"]
