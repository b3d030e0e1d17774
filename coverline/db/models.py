"""Every table, imported in one place so that the metadata (and Alembic) sees them all."""

from coverline.bookings.models import BookingUpdate, Cancellation, Instalment
from coverline.catalog.models import FxRate, Product, ProductVersion
from coverline.dashboard.models import DashboardSession, DashboardUser
from coverline.db.base import Base
from coverline.events.models import Event
from coverline.messaging.models import Message, MessageTemplate, MessagingSettings
from coverline.partners.models import ApiCredential, IdempotencyKey, Partner
from coverline.quotes.models import Policyholder, Quote, QuotePackage
from coverline.renewals.models import Renewal
from coverline.sandbox.models import SandboxClock
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

metadata = Base.metadata

__all__ = [
    "ApiCredential",
    "BookingUpdate",
    "Cancellation",
    "DashboardSession",
    "DashboardUser",
    "Event",
    "FxRate",
    "IdempotencyKey",
    "Instalment",
    "Message",
    "MessageTemplate",
    "MessagingSettings",
    "Partner",
    "Policyholder",
    "Product",
    "ProductVersion",
    "Quote",
    "QuotePackage",
    "Renewal",
    "SandboxClock",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]
