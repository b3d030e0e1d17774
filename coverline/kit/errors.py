"""One error hierarchy for the whole service.

Every error carries its HTTP status and its wire type; one handler in `coverline.app`
renders them as `{"type": ..., "message": ..., "errors": ...}` (API-CONTRACT §3). The domain
raises these without knowing about HTTP beyond the status number.
"""

from __future__ import annotations

from typing import Any

ErrorDetail = dict[str, Any] | list[str]


# The key of problems that belong to no one field (as Django REST framework names it).
NON_FIELD_ERRORS = "non_field_errors"


class CoverlineError(Exception):
    status_code = 500
    error_type = "api_error"
    default_message = "An API error occurred."

    def __init__(
        self,
        message: str | None = None,
        errors: ErrorDetail | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.errors: ErrorDetail = errors if errors is not None else {}
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"type": self.error_type, "message": self.message, "errors": self.errors}


class BadRequest(CoverlineError):
    status_code = 400
    error_type = "invalid_request_error"
    default_message = "The request is malformed."


class AuthenticationFailed(CoverlineError):
    status_code = 401
    error_type = "authentication_error"
    default_message = "Authentication failed."


class PaymentFailed(CoverlineError):
    status_code = 402
    error_type = "request_failed"
    default_message = "The request was valid but it failed."


class NotFound(CoverlineError):
    status_code = 404
    error_type = "not_found"
    default_message = "Not found."


class Conflict(CoverlineError):
    status_code = 409
    error_type = "conflict"
    default_message = "The request conflicts with the current state of the resource."


class PayloadTooLarge(CoverlineError):
    status_code = 413
    error_type = "invalid_request_error"
    default_message = "The request body is too large."


class ValidationFailed(CoverlineError):
    status_code = 422
    error_type = "validation_error"
    default_message = "An API error occurred."


class Locked(CoverlineError):
    status_code = 423
    error_type = "idempotency_error"
    default_message = "A request with this idempotency key is still being processed."


class RateLimited(CoverlineError):
    status_code = 429
    error_type = "rate_limit_error"
    default_message = "Too many requests."


class ServiceUnavailable(CoverlineError):
    status_code = 503
    error_type = "service_unavailable"
    default_message = "The service is briefly unavailable; retry the request."
