"""A model-free `TextEngine`: ChatML rendering, byte tokens and `max_tokens` echo tokens.

For the places where the model is beside the point: API tests of admission, errors and
streaming shape, and the gateway bench's `--engine echo`, which measures the gateway's share
without a model's. Tests of the real engine path use the demo models instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

from pureinfer.engines.base import TextDelta, TextRequest


class EchoTextEngine:
    """A `TextEngine` without a model (see the module docstring)."""

    model_id = "echo"
    n_ctx = 4096
    has_chat_template = True
    control_tokens = frozenset({"<|im_start|>", "<|im_end|>"})

    def __init__(self) -> None:
        self._running = 0

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
            "<|im_start|>assistant\n"

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    async def generate(self, request: TextRequest) -> AsyncGenerator[TextDelta, None]:
        self._running += 1
        try:
            n = request.params.max_tokens
            for i in range(n):
                await asyncio.sleep(0)
                yield TextDelta(f"w{i} ", [100 + i], "length" if i == n - 1 else None)
        finally:
            self._running -= 1

    @property
    def num_running(self) -> int:
        return self._running

    @property
    def num_waiting(self) -> int:
        return 0

    def is_alive(self) -> bool:
        return True

    async def start(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None
