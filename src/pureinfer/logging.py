"""Structured JSON log lines with the request id carried through a context variable.

Written on the stdlib: a 30-line `logging.Formatter` does what we need (one JSON object per
line, `extra=` fields merged in) without another dependency.

`extra=` keys are free-form, so no log call can fail on them: the stdlib raises KeyError while
building a record whose `extra` names a LogRecord attribute (`message`, `args`, `name`, ...),
which turned every gateway `/chat` into a 500 at INFO level. `SafeExtrasLogger` (installed as the
logger class when this module is imported, which `pureinfer/__init__.py` does first) keeps such a
key as `extra_<key>` instead.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pureinfer import jsonline

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# A caller's X-Request-ID is kept when it is this sane (it ends up in logs, headers and the audit
# table's 64-character column); anything else is replaced by a fresh id.
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id_from(given: str | None) -> str:
    return given if given and _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_base_factory = logging.getLogRecordFactory()
# Keys an `extra=` may not set: the LogRecord's own attributes, and the request id our record
# factory stamps on records made inside a request.
_EXTRA_CLASHES = frozenset(_RESERVED | {"request_id"})


class SafeExtrasLogger(logging.Logger):
    """A Logger whose `extra=` can never make the log call raise (see the module docstring)."""

    def makeRecord(self, name: str, level: int, fn: str, lno: int, msg: object, args: Any, exc_info: Any,
                   func: str | None = None, extra: Mapping[str, object] | None = None,
                   sinfo: str | None = None) -> logging.LogRecord:
        if extra:
            extra = {(f"extra_{k}" if k in _EXTRA_CLASHES else k): v for k, v in extra.items()}
        return super().makeRecord(name, level, fn, lno, msg, args, exc_info, func, extra, sinfo)


if not issubclass(logging.getLoggerClass(), SafeExtrasLogger):
    logging.setLoggerClass(SafeExtrasLogger)


def _record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Stamp each record with the request id when it is created (not when a handler formats it,
    which may happen later, on another task or thread)."""
    record = _base_factory(*args, **kwargs)
    if not hasattr(record, "request_id"):
        rid = request_id_var.get()
        if rid:
            record.request_id = rid
    return record


if getattr(logging.getLogRecordFactory(), "__name__", "") != _record_with_request_id.__name__:
    logging.setLogRecordFactory(_record_with_request_id)

PromptLogging = Literal["none", "preview", "full"]
PREVIEW_CHARS = 100


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return jsonline.one_line(json.dumps(line, ensure_ascii=False, default=str))


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel("WARNING")  # our own access line carries more
    # httpx and httpcore log every call (its URL) at INFO: one line per worker call and health
    # check, drowning the gateway's own lines. Their warnings and errors still show.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def prompt_for_log(text: str, mode: PromptLogging) -> str | None:
    """What of a prompt may be logged: nothing, the first 100 characters, or all of it."""
    if mode == "none":
        return None
    if mode == "preview" and len(text) > PREVIEW_CHARS:
        return text[:PREVIEW_CHARS] + "..."
    return text
