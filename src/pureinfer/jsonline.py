"""JSON that stays on one line for every line reader: what streams (SSE, NDJSON) and JSON logs
write.

`json.dumps` escapes the ASCII control characters (LF, CR, VT, FF, the separators 0x1C-0x1E) but,
with `ensure_ascii=False`, leaves U+0085 (NEL), U+2028 and U+2029 raw inside strings: valid JSON,
and a line break to every reader that splits with `str.splitlines` (httpx's `aiter_lines`, which
the `ollama` Python client reads NDJSON with; Python's `splitlines` on a log file). A prompt or a
model's output holding one of them would cut an event or a log line in two. They are written as
`\\u` escapes here; everything else stays UTF-8, so logs and streams remain readable.
"""

from __future__ import annotations

import json
from typing import Any

# Line breaks to `str.splitlines` that JSON may leave raw (inside strings only, so a plain
# replacement cannot touch anything outside a string).
_RAW_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def one_line(text: str) -> str:
    """`text`, JSON from `json.dumps`, with the line breaks JSON leaves raw escaped."""
    return text.translate(_RAW_BREAKS)


def dumps(obj: Any) -> str:
    """Compact JSON of `obj` that no line reader splits (a stream's event or line)."""
    return one_line(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
