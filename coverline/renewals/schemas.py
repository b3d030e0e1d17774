"""Response bodies of the renewal endpoints."""

from __future__ import annotations

from coverline.kit.http import ResponseBody
from coverline.quotes.schemas import BookingOut


class RenewalOut(ResponseBody):
    id: str
    package_id: str
    quote_id: str
    status: str
    start_date: str | None
    notification_date: str | None
    due_date: str | None
    expiry_date: str | None
    cancelled_on: str | None
    paid_on: str | None
    created_at: str


class QuotedRenewalOut(RenewalOut):
    price: float
    price_formatted: str
    policy_start_date: str
    policy_end_date: str
    policy_version: str | None


class BookingRenewalQuoteOut(BookingOut):
    renewal_id: str
    renewal: QuotedRenewalOut


class BookingRenewalOut(BookingOut):
    renewal_id: str
    renewal: RenewalOut
