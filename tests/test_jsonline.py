"""jsonline: the JSON that streams and logs write never breaks a line for any line reader."""

from __future__ import annotations

import json
import logging

import pytest

from pureinfer import jsonline
from pureinfer.logging import JsonFormatter

# Every line boundary of `str.splitlines` (what httpx's aiter_lines splits at).
BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


@pytest.mark.parametrize("brk", BREAKS)
def test_dumps_is_one_line_and_round_trips(brk: str) -> None:
    obj = {"text": f"before{brk}after", "list": [f"x{brk}", {"k{brk}": brk}]}
    text = jsonline.dumps(obj)
    assert text.splitlines() == [text]
    assert json.loads(text) == obj


def test_other_text_stays_readable_utf8() -> None:
    text = jsonline.dumps({"t": "café 雪 🌅"})
    assert text == '{"t":"café 雪 🌅"}'


@pytest.mark.parametrize("brk", BREAKS)
def test_a_log_line_stays_one_line(brk: str) -> None:
    record = logging.LogRecord("pureinfer.test", logging.INFO, __file__, 1, f"prompt{brk}forged", None, None)
    line = JsonFormatter().format(record)
    assert line.splitlines() == [line]
    assert json.loads(line)["message"] == f"prompt{brk}forged"
