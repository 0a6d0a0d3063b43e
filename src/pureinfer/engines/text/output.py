"""From generated token ids to the text a caller sees: incremental detokenization and stops.

* Detokenization is ``tokenizers``' own ``DecodeStream`` (it holds back the bytes of a
  character split over several tokens, so a delta never carries broken UTF-8, and it
  skips special tokens like ``decode(skip_special_tokens=True)``).
* An EOS token ends the output with ``finish_reason="stop"``; its id counts as generated.
* A stop string is cut out of the text (with everything after it) and ends the output with
  ``"stop"``. Text that could still turn into a stop string is held back until it can't.
* Neither EOS nor stop strings can end the output before ``min_tokens`` tokens.
* ``max_tokens`` tokens end it with ``"length"``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream

from pureinfer.engines.base import FinishReason


@dataclass(slots=True)
class Step:
    text: str  # new text to emit (possibly empty)
    finish_reason: FinishReason | None


class OutputText:
    """The output state of one request; `add` is called once per generated token."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        eos_ids: Collection[int],
        stop: Sequence[str] = (),
        min_tokens: int = 0,
        max_tokens: int,
    ) -> None:
        self._tokenizer = tokenizer
        self._decoder = DecodeStream(skip_special_tokens=True)
        self._eos_ids = eos_ids
        self._stop = tuple(s for s in stop if s)
        self._max_stop = max((len(s) for s in self._stop), default=0)
        self._min_tokens = min_tokens
        self._max_tokens = max_tokens
        self.text = ""  # everything decoded so far
        self.emitted = 0  # characters of `text` already handed out
        self.n_tokens = 0

    def add(self, token_id: int) -> Step:
        self.n_tokens += 1
        stops_active = self.n_tokens >= self._min_tokens
        if token_id in self._eos_ids and stops_active:
            return self._finish(len(self.text), "stop")
        before = len(self.text)
        piece = self._decoder.step(self._tokenizer, token_id)
        if piece:
            self.text += piece
        if self._stop and stops_active and piece:
            cut = self._find_stop(max(0, before - self._max_stop + 1))
            if cut is not None:
                return self._finish(cut, "stop")
        if self.n_tokens >= self._max_tokens:
            return self._finish(len(self.text), "length")
        end = len(self.text) - self._held_back() if stops_active else len(self.text)
        return self._emit(end, None)

    def _find_stop(self, start: int) -> int | None:
        hits = [i for s in self._stop if (i := self.text.find(s, start)) >= 0]
        return min(hits) if hits else None

    def _held_back(self) -> int:
        """Length of the longest tail of `text` that is the beginning of a stop string."""
        for n in range(min(self._max_stop - 1, len(self.text) - self.emitted), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self._stop):
                return n
        return 0

    def _emit(self, end: int, reason: FinishReason | None) -> Step:
        end = max(end, self.emitted)
        piece = self.text[self.emitted : end]
        self.emitted = end
        return Step(piece, reason)

    def _finish(self, end: int, reason: FinishReason) -> Step:
        self.text = self.text[: max(end, self.emitted)]
        return self._emit(len(self.text), reason)
