"""A minimal `TextEngine` for the real worker app while (or where) the transformers engine is not
importable: ChatML rendering, byte "tokens", a deterministic echo. The worker's routing, auth,
admission, SSE and error handling around it are the real ones."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from pureinfer.engines.base import TextDelta, TextRequest


class EchoTextEngine:
    model_id = "echo"
    n_ctx = 4096
    has_chat_template = True

    def __init__(self) -> None:
        self._running = 0

    def apply_chat_template(self, messages: Sequence[dict[str, str]]) -> str:
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
            "<|im_start|>assistant\n"

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    async def generate(self, request: TextRequest) -> AsyncIterator[TextDelta]:
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


def text_engines_or_none() -> dict[str, EchoTextEngine] | None:
    """None (load the real demo model) when the transformers engine exists, else the echo engine."""
    try:
        import pureinfer.engines.hf_text  # noqa: F401
    except ImportError:
        return {"qwen_instruct": EchoTextEngine()}
    return None
