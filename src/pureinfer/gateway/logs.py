"""JSON log lines for the gateway: stdlib `logging` with a formatter that writes the message,
the level, the logger and every `extra={...}` field (event names follow the seed's edge-function
logging: enhance_request, template_selected, worker_payload, enhance_result)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    """Install the JSON formatter on the `pureinfer` logger (idempotent)."""
    logger = logging.getLogger("pureinfer")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_pureinfer_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._pureinfer_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
