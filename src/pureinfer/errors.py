"""One error hierarchy and one envelope for every surface (HTTP JSON, SSE events, job results).

Errors raise, never return. Each class carries its wire code, HTTP status and the action we
suggest to the caller; `envelope()` is the only place that turns an exception into the wire
shape ``{success: false, error, details, error_code, suggested_action, request_id}``.

    PureInferError                 500 INTERNAL_ERROR (base; unknown failures end up here)
    ├── InvalidPayload             400 INVALID_PAYLOAD   details: {"fields": [{field, message}]}
    │   └── PayloadTooLarge        413 INVALID_PAYLOAD   details: {"max_bytes", "field": "body"}
    ├── Unauthorized               401 UNAUTHORIZED
    ├── TokenLimitExceeded         400 TOKEN_LIMIT_EXCEEDED  details: the counts
    ├── TemplateNotFound           404 TEMPLATE_NOT_FOUND
    ├── NotFound                   404 NOT_FOUND
    ├── WorkerUnavailable          503 WORKER_UNAVAILABLE  (Retry-After)
    ├── WorkerOverloaded           503 WORKER_OVERLOADED   (Retry-After)
    ├── OutOfMemory                503 OUT_OF_MEMORY       (Retry-After)
    ├── WorkerTimeout              504 WORKER_TIMEOUT
    └── InternalError              500 INTERNAL_ERROR

Exceptions that are not ``PureInferError`` are reported as INTERNAL_ERROR with a generic message:
no stack trace or library text leaves the process.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    UNAUTHORIZED = "UNAUTHORIZED"
    CSRF_TOKEN_INVALID = "CSRF_TOKEN_INVALID"
    TOKEN_LIMIT_EXCEEDED = "TOKEN_LIMIT_EXCEEDED"
    TEMPLATE_NOT_FOUND = "TEMPLATE_NOT_FOUND"
    WORKER_UNAVAILABLE = "WORKER_UNAVAILABLE"
    WORKER_OVERLOADED = "WORKER_OVERLOADED"
    WORKER_TIMEOUT = "WORKER_TIMEOUT"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    NOT_FOUND = "NOT_FOUND"
    INTERNAL_ERROR = "INTERNAL_ERROR"


Details = dict[str, Any] | None


class PureInferError(Exception):
    """Base of every error the product reports. Subclasses set the class attributes."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    http_status: int = 500
    suggested_action: str = "Retry later; if the problem persists, contact the operator with the request_id"
    retry_after: int | None = None

    def __init__(
        self,
        message: str,
        details: Details = None,
        *,
        suggested_action: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if suggested_action is not None:
            self.suggested_action = suggested_action
        if retry_after is not None:
            self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class InvalidPayload(PureInferError):
    code = ErrorCode.INVALID_PAYLOAD
    http_status = 400
    suggested_action = "Fix the fields named in details and send the request again"

    @classmethod
    def field(cls, field: str, message: str) -> InvalidPayload:
        """The common case: one named field is wrong."""
        return cls(f"{field}: {message}", {"fields": [{"field": field, "message": message}]})


class PayloadTooLarge(InvalidPayload):
    http_status = 413
    suggested_action = "Send a smaller request body"


class Unauthorized(PureInferError):
    code = ErrorCode.UNAUTHORIZED
    http_status = 401
    suggested_action = "Send a valid API key (Authorization: Bearer KEY or X-API-Key) and, where required, a fresh request signature"


class CsrfTokenInvalid(PureInferError):
    """A state-changing request authenticated by a session cookie without the session's CSRF
    token: a cookie is sent by the browser on its own, so it alone proves nothing."""

    code = ErrorCode.CSRF_TOKEN_INVALID
    http_status = 403
    suggested_action = "Send the session's CSRF token in the X-CSRF-Token header (the console does this)"


class TokenLimitExceeded(PureInferError):
    code = ErrorCode.TOKEN_LIMIT_EXCEEDED
    http_status = 400
    suggested_action = "Shorten the prompt or lower max_tokens so that both fit the limits in details"


class TemplateNotFound(PureInferError):
    code = ErrorCode.TEMPLATE_NOT_FOUND
    http_status = 404
    suggested_action = "Create or activate a template for this combination, or configure a default template"


class NotFound(PureInferError):
    code = ErrorCode.NOT_FOUND
    http_status = 404
    suggested_action = "Check the identifier or path"


class WorkerUnavailable(PureInferError):
    code = ErrorCode.WORKER_UNAVAILABLE
    http_status = 503
    suggested_action = "Retry with exponential backoff"
    retry_after = 5


class WorkerOverloaded(PureInferError):
    code = ErrorCode.WORKER_OVERLOADED
    http_status = 503
    suggested_action = "Retry with exponential backoff"
    retry_after = 1


class OutOfMemory(PureInferError):
    code = ErrorCode.OUT_OF_MEMORY
    http_status = 503
    suggested_action = "Retry later or with a smaller request (fewer tokens, images or pixels)"
    retry_after = 2


class WorkerTimeout(PureInferError):
    code = ErrorCode.WORKER_TIMEOUT
    http_status = 504
    suggested_action = "Retry with exponential backoff, or ask for less work (fewer tokens or steps)"


class InternalError(PureInferError):
    pass


_CODE_TO_CLASS: dict[ErrorCode, type[PureInferError]] = {
    ErrorCode.INVALID_PAYLOAD: InvalidPayload,
    ErrorCode.UNAUTHORIZED: Unauthorized,
    ErrorCode.CSRF_TOKEN_INVALID: CsrfTokenInvalid,
    ErrorCode.TOKEN_LIMIT_EXCEEDED: TokenLimitExceeded,
    ErrorCode.TEMPLATE_NOT_FOUND: TemplateNotFound,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.WORKER_UNAVAILABLE: WorkerUnavailable,
    ErrorCode.WORKER_OVERLOADED: WorkerOverloaded,
    ErrorCode.OUT_OF_MEMORY: OutOfMemory,
    ErrorCode.WORKER_TIMEOUT: WorkerTimeout,
    ErrorCode.INTERNAL_ERROR: InternalError,
}


def as_pureinfer_error(exc: BaseException) -> PureInferError:
    """Unknown exceptions become a generic INTERNAL_ERROR: their text stays in our logs."""
    if isinstance(exc, PureInferError):
        return exc
    return InternalError("Internal error")


def envelope(exc: BaseException, request_id: str | None = None) -> dict[str, Any]:
    """The wire shape of an error, used by JSON responses, SSE error events and job results."""
    err = as_pureinfer_error(exc)
    return {
        "success": False,
        "error": err.message,
        "details": err.details,
        "error_code": err.code.value,
        "suggested_action": err.suggested_action,
        "request_id": request_id,
    }


def from_envelope(body: dict[str, Any], http_status: int | None = None) -> PureInferError:
    """Rebuild the exception a remote worker reported, so its code passes through unchanged."""
    try:
        code = ErrorCode(body.get("error_code", "INTERNAL_ERROR"))
    except ValueError:
        code = ErrorCode.INTERNAL_ERROR
    cls = _CODE_TO_CLASS[code]
    if cls is InvalidPayload and http_status == 413:
        cls = PayloadTooLarge
    err = cls(str(body.get("error") or code.value), body.get("details"),
              suggested_action=body.get("suggested_action"))
    return err
