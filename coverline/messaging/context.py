"""What templates see: the variables of `templates.VARIABLES`, built from the booking as its
events carry it (the outbox payloads), never from live rows, so a message says what the
change that caused it said."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from coverline.kit.money import format_money, is_currency

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class Branding:
    name: str
    support_url: str | None
    support_email: str | None
    brand_colour: str

    def json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "support_url": self.support_url,
            "support_email": self.support_email,
            "brand_colour": self.brand_colour,
        }


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def human_time(moment: datetime | None) -> str | None:
    """`21 February 2030, 09:30 UTC` or `1 May 2030, 10:00 (UTC+01:00)`: the partner's offset."""
    if moment is None:
        return None
    offset = moment.utcoffset()
    if offset is None or not offset:
        zone = "UTC"
    else:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        hours, rest = divmod(abs(minutes), 60)
        zone = f"(UTC{sign}{hours:02d}:{rest:02d})"
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}, {moment:%H:%M} {zone}"


def _money(value: Any, currency: str) -> str | None:
    if value is None or isinstance(value, bool) or not is_currency(currency):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return format_money(amount, currency)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def customer_json(holder: dict[str, Any] | None) -> dict[str, Any]:
    holder = holder or {}
    first = _text(holder.get("first_name")) or ""
    last = _text(holder.get("last_name")) or ""
    return {
        "first_name": first,
        "last_name": last,
        "full_name": " ".join(part for part in (first, last) if part),
        "email": _text(holder.get("email")),
        "phone": _text(holder.get("phone")),
    }


def _policy(quote: dict[str, Any], currency: str) -> dict[str, Any]:
    policy = quote.get("policy") or {}
    content = policy.get("content") or {}
    name = _text(content.get("title")) or _text(policy.get("policy_name")) or "policy"
    refund = quote.get("refund_value")
    return {
        "id": quote.get("id"),
        "name": name,
        "type": policy.get("policy_type"),
        "status": quote.get("status"),
        "start_date": human_time(parse_time(quote.get("policy_start_date"))),
        "end_date": human_time(parse_time(quote.get("policy_end_date"))),
        "price": _text(quote.get("price_formatted")) or _money(quote.get("price"), currency),
        "cover_amount": _text(quote.get("cover_amount_formatted")),
        "pds_url": _text(quote.get("pds_url")),
        "refund": _money(refund, currency) if refund is not None else None,
    }


def booking_context(
    kind: str, booking: dict[str, Any], branding: Branding, language: str
) -> dict[str, Any]:
    """The context of a message about `booking` (a booking as its events render it)."""
    currency = str(booking.get("currency") or "")
    quotes = [q for q in booking.get("quotes") or [] if isinstance(q, dict)]
    policies = [_policy(quote, currency) for quote in quotes]
    starts = [t for t in (parse_time(q.get("policy_start_date")) for q in quotes) if t]
    ends = [t for t in (parse_time(q.get("policy_end_date")) for q in quotes) if t]
    coi = booking.get("coi") or {}
    refund = None
    if kind == "cancellation":
        refunded = [q.get("refund_value") for q in quotes if q.get("refund_value") is not None]
        total = booking.get("total_refund")
        if total is None and refunded:
            total = sum((Decimal(str(v)) for v in refunded), Decimal(0))
        if total is not None:
            refund = {"total": _money(total, currency), "amount": str(total)}
    return {
        "event": kind,
        "language": language,
        "partner": branding.json(),
        "customer": customer_json(booking.get("policyholder")),
        "booking": {
            "id": booking.get("id"),
            "status": booking.get("status"),
            "currency": currency,
            "total_price": _text(booking.get("total_price_formatted"))
            or _money(booking.get("total_price"), currency),
            "pds_url": _text(booking.get("pds_url")),
            "certificate_url": _text(coi.get("url")),
            "partner_transaction_id": booking.get("partner_transaction_id"),
        },
        "policies": policies,
        "policy": policies[0] if policies else None,
        "cover_start": human_time(min(starts)) if starts else None,
        "cover_end": human_time(max(ends)) if ends else None,
        "renewal": None,
        "refund": refund,
    }


def with_renewal(
    context: dict[str, Any],
    renewal: dict[str, Any],
    booking: dict[str, Any],
    amount: Any = None,
) -> dict[str, Any]:
    """Add the renewal a renewal message is about; its price is what was paid (a renewal
    success) or the current price of its policy."""
    currency = str(booking.get("currency") or "")
    quote = next(
        (q for q in booking.get("quotes") or [] if q.get("id") == renewal.get("quote_id")), None
    )
    policy = _policy(quote, currency) if quote else None
    price = _money(amount, currency) if amount is not None else None
    # The renewal record's times are UTC; shown in the offset of the policy's end, as the
    # partner sent it (the renewal falls due when the policy ends).
    end = parse_time(quote.get("policy_end_date")) if quote else None
    zone = end.tzinfo if end is not None else None

    def shown(name: str) -> str | None:
        moment = parse_time(renewal.get(name))
        return human_time(moment.astimezone(zone) if moment is not None and zone else moment)

    return {
        **context,
        "renewal": {
            "id": renewal.get("id"),
            "status": renewal.get("status"),
            "policy_name": policy["name"] if policy else "policy",
            "start_date": shown("start_date"),
            "notification_date": shown("notification_date"),
            "due_date": shown("due_date"),
            "expiry_date": shown("expiry_date"),
            "paid_on": shown("paid_on"),
            "price": price or (policy["price"] if policy else None),
        },
    }


SAMPLE_BOOKING: dict[str, Any] = {
    "id": "GX7KD-4M2QP-INS",
    "status": "CONFIRMED",
    "currency": "NGN",
    "total_price": 5000.0,
    "total_price_formatted": "₦5,000.00",
    "partner_transaction_id": "order-1042",
    "pds_url": "https://cover.example/pds/GX7KD-4M2QP-INS",
    "coi": {"url": "https://cover.example/coi/GX7KD-4M2QP-INS?security_token=sample"},
    "policyholder": {
        "first_name": "Ọláolúwa",
        "last_name": "Adéwálé",
        "email": "olaoluwa.adewale@example.ng",
        "phone": "+2348031234567",
    },
    "quotes": [
        {
            "id": "7f9c2b1e-3d4a-4c5b-9e8f-1a2b3c4d5e6f",
            "status": "CONFIRMED",
            "policy_start_date": "2030-05-01T10:00:00+01:00",
            "policy_end_date": "2030-05-31T10:00:00+01:00",
            "price": 5000.0,
            "price_formatted": "₦5,000.00",
            "cover_amount_formatted": "₦450,000.00",
            "refund_value": 2500.0,
            "pds_url": "https://cover.example/pds/GX7KD-4M2QP-INS?policy_type=gadget_cover_v1",
            "policy": {
                "policy_type": "gadget_cover",
                "policy_name": "Gadget Cover",
                "content": {"title": "Gadget Cover for your Tecno Camon 30"},
            },
        }
    ],
}
SAMPLE_RENEWAL: dict[str, Any] = {
    "id": "Qm3xT-9vLpA-REN",
    "quote_id": "7f9c2b1e-3d4a-4c5b-9e8f-1a2b3c4d5e6f",
    "status": "DUE",
    "start_date": "2030-05-31T09:00:00Z",
    "notification_date": "2030-05-24T09:00:00Z",
    "due_date": "2030-05-31T09:00:00Z",
    "expiry_date": "2030-06-14T09:00:00Z",
    "paid_on": "2030-05-30T12:00:00Z",
}


def sample_context(kind: str, branding: Branding, language: str) -> dict[str, Any]:
    """A context with every variable filled: what templates are tried on before saving."""
    context = booking_context("cancellation", SAMPLE_BOOKING, branding, language)
    context["event"] = kind
    return with_renewal(context, SAMPLE_RENEWAL, SAMPLE_BOOKING, amount=5000)
