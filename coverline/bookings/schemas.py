"""Response bodies of a booking's lifecycle: priced changes, cancellations, instalments."""

from __future__ import annotations

from typing import Any

from coverline.kit.http import ResponseBody
from coverline.quotes.schemas import BookingOut


class BookingDiffOut(BookingOut):
    """A booking with what a change costs: `price_diff` per quote, and in total."""

    total_price_diff: float
    total_price_diff_formatted: str


class BookingUpdateOut(BookingDiffOut):
    update_id: str
    update_expires_at: str


class CancelledQuoteOut(ResponseBody):
    id: str
    status: str
    price: float
    refund_value: float
    adjustment_fee: float
    policy_cancellation_date: str | None
    policy_coolingoff_date: str | None


class CancellationOut(ResponseBody):
    id: str
    status: str
    currency: str
    quotes: list[CancelledQuoteOut]
    total_price: float
    total_refund: float
    total_refund_formatted: str
    cancellation_id: str | None
    confirm_before: str | None


class QuoteInstalmentsOut(ResponseBody):
    id: str
    next_payment: dict[str, Any] | None
    paid_until: str | None
    payment_schedule: list[dict[str, Any]]
    total_amount_paid: float
    total_amount_due: float


class InstalmentsOut(ResponseBody):
    currency: str
    quotes: list[QuoteInstalmentsOut]
