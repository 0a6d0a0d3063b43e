from __future__ import annotations

from pureinfer.errors import (
    ErrorCode,
    InvalidPayload,
    PayloadTooLarge,
    TokenLimitExceeded,
    WorkerOverloaded,
    envelope,
    from_envelope,
)


def test_envelope_shape_and_unknown_errors_hidden() -> None:
    env = envelope(ValueError("secret internals"), "rid")
    assert env == {"success": False, "error": "Internal error", "details": None, "error_code": "INTERNAL_ERROR",
                   "suggested_action": env["suggested_action"], "request_id": "rid"}


def test_codes_and_statuses() -> None:
    assert (InvalidPayload.field("x", "bad").http_status, PayloadTooLarge("big").http_status) == (400, 413)
    assert TokenLimitExceeded("t").code == ErrorCode.TOKEN_LIMIT_EXCEEDED
    assert WorkerOverloaded("o").headers() == {"Retry-After": "1"}


def test_round_trip_keeps_code_and_details() -> None:
    err = TokenLimitExceeded("too long", {"n_ctx": 5})
    back = from_envelope(envelope(err, "r"))
    assert isinstance(back, TokenLimitExceeded) and back.details == {"n_ctx": 5} and back.message == "too long"
    assert isinstance(from_envelope({"error_code": "NOPE"}), Exception)
    assert isinstance(from_envelope(envelope(PayloadTooLarge("b"), None), 413), PayloadTooLarge)


def test_error_shapes_pick_the_longest_prefix() -> None:
    from pureinfer.errors import InvalidPayload, envelope
    from pureinfer.http_errors import ErrorShapes

    def short(err, rid):  # noqa: ANN001, ANN202
        return {"short": err.message}

    def long(err, rid):  # noqa: ANN001, ANN202
        return {"long": err.message, "rid": rid}

    shapes = ErrorShapes({"/sdapi/": short, "/sdapi/v1/": long})
    err = InvalidPayload("bad")
    assert shapes.for_path("/sdapi/v1/txt2img")(err, "r") == {"long": "bad", "rid": "r"}
    assert shapes.for_path("/sdapi/v2")(err, "r") == {"short": "bad"}
    assert shapes.for_path("/chat")(err, "r") == envelope(err, "r")
