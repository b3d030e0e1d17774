"""The exceptions the SDK raises: one base class, API errors by HTTP status, transport errors
and webhook verification failures."""

from __future__ import annotations

from typing import Any, Mapping, Optional


class CoverlineError(Exception):
    """The base class of every exception this package raises."""


class APIError(CoverlineError):
    """The API answered with an error status.

    Attributes: `status` (the HTTP status), `type` (the error type of the body, such as
    `validation_error`), `message`, `errors` (field errors, possibly nested), `request_id` (the
    `X-Request-Id` response header: quote it when asking for support), `body` (the parsed
    response body, or its text when it was not JSON) and `headers`.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: Optional[str] = None,
        errors: Optional[Mapping[str, Any]] = None,
        request_id: Optional[str] = None,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.errors: Mapping[str, Any] = errors or {}
        self.request_id = request_id
        self.body = body
        self.headers: Mapping[str, str] = headers or {}

    def __str__(self) -> str:
        text = f"{self.status} {self.type or 'error'}: {self.message}"
        if self.errors:
            text += f" {dict(self.errors)!r}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text


class BadRequestError(APIError):
    """400 or 413: the request was malformed (bad JSON, a bad header, a body too large)."""


class AuthenticationError(APIError):
    """401: missing or invalid credentials, a wrong signature or a Date too far from the
    server's clock."""


class NotFoundError(APIError):
    """404: an unknown resource, or one of another partner or mode."""


class ConflictError(APIError):
    """409 without `Idempotent-Replayed` (a state conflict, such as cancelling a cancelled
    booking), or 423 (a request with the same idempotency key is still running) once the
    retries are spent."""


class ValidationError(APIError):
    """422: validation or business rules; `errors` holds the field errors, in XCover's shapes
    (`{"policyholder": {"phone": ["…"]}}`, `{"policy_version": "Unexpected field"}`)."""


class RateLimitError(APIError):
    """429 once the retries are spent; `retry_after` is the server's `Retry-After` in
    seconds, when it sent one."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ServerError(APIError):
    """A 5xx status once the retries are spent."""


class APIConnectionError(CoverlineError):
    """The server could not be reached, or the connection failed, once the retries are
    spent. `__cause__` holds the transport's own exception."""


class APITimeoutError(APIConnectionError):
    """The request timed out once the retries are spent."""


class WebhookVerificationError(CoverlineError):
    """A webhook failed verification: a missing or malformed header, a signature that does
    not match, a timestamp outside the tolerance, or a body that is not JSON."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: BadRequestError,
    422: ValidationError,
    423: ConflictError,
    429: RateLimitError,
}


def error_class(status: int) -> type[APIError]:
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, APIError)
