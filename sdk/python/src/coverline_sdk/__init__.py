"""Coverline's partner SDK: a typed client of the partner API (`Coverline`, `AsyncCoverline`)
and a verifier of its webhooks (`Webhook`, `verify_webhook`).

    from coverline_sdk import Coverline

    with Coverline() as client:          # COVERLINE_BASE_URL, _PARTNER_CODE, _API_KEY, _API_SECRET
        booking = client.bookings.get("GKDK9-CECQU-INS")
"""

from ._async_client import AsyncCoverline
from ._client import Coverline
from ._core import NOT_GIVEN, NotGiven, __version__
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    CoverlineError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ValidationError,
    WebhookVerificationError,
)
from ._models import (
    ApiKey,
    Booking,
    Cancellation,
    ClockTransition,
    Country,
    Currency,
    Customer,
    Instalment,
    Instalments,
    InstalmentSchedule,
    Language,
    Message,
    Page,
    Policy,
    Policyholder,
    Purchase,
    Quote,
    QuotePackage,
    Recovery,
    Redelivery,
    Region,
    Renewal,
    SandboxClock,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookSecret,
)
from ._retry import RetryPolicy
from ._webhooks import Webhook, verify_webhook

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "ApiKey",
    "AsyncCoverline",
    "AuthenticationError",
    "BadRequestError",
    "Booking",
    "Cancellation",
    "ClockTransition",
    "ConflictError",
    "Country",
    "Coverline",
    "CoverlineError",
    "Currency",
    "Customer",
    "Instalment",
    "InstalmentSchedule",
    "Instalments",
    "Language",
    "Message",
    "NotFoundError",
    "NotGiven",
    "Page",
    "Policy",
    "Policyholder",
    "Purchase",
    "Quote",
    "QuotePackage",
    "RateLimitError",
    "Recovery",
    "Redelivery",
    "Region",
    "Renewal",
    "RetryPolicy",
    "SandboxClock",
    "ServerError",
    "ValidationError",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "WebhookSecret",
    "WebhookVerificationError",
    "__version__",
    "verify_webhook",
]
