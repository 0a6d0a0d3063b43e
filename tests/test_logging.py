"""The JSON logging layer: no `extra=` key can make a log call raise (the stdlib refuses keys
that name LogRecord attributes), inside a request (request id stamped) or not."""

from __future__ import annotations

import io
import json
import logging

from pureinfer.logging import JsonFormatter, SafeExtrasLogger, request_id_var


def test_reserved_extra_keys_are_kept_not_raised():
    log = logging.getLogger("pureinfer.test_logging")
    assert isinstance(log, SafeExtrasLogger)  # every pureinfer logger
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    token = request_id_var.set("rid-1")
    try:
        log.info("chat request", extra={"message": "user text", "args": [1], "name": "n", "request_id": "x",
                                        "event": "chat_request"})
    finally:
        request_id_var.reset(token)
        log.removeHandler(handler)
    line = json.loads(out.getvalue())
    assert (line["message"], line["event"], line["request_id"]) == ("chat request", "chat_request", "rid-1")
    assert (line["extra_message"], line["extra_args"], line["extra_name"], line["extra_request_id"]) == \
        ("user text", [1], "n", "x")
