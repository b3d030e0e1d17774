"""Every table, imported in one place so that the metadata (and Alembic) sees them all."""

from coverline.catalog.models import FxRate, Product, ProductVersion
from coverline.db.base import Base
from coverline.events.models import Event
from coverline.partners.models import ApiCredential, IdempotencyKey, Partner
from coverline.quotes.models import Policyholder, Quote, QuotePackage
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

metadata = Base.metadata

__all__ = [
    "ApiCredential",
    "Event",
    "FxRate",
    "IdempotencyKey",
    "Partner",
    "Policyholder",
    "Product",
    "ProductVersion",
    "Quote",
    "QuotePackage",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
]
