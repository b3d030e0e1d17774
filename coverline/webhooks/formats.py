"""What a partner receives: outbox events in XCover's and MyCover.ai's webhook formats
(API-CONTRACT §8 and the examples in the source documents)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

XCOVER = "xcover"
MYCOVER = "mycover"
FORMATS = (XCOVER, MYCOVER)

# Internal event type → the XCover webhook it is sent as.
XCOVER_EVENTS = {
    "BOOKING_CREATED": "BOOKING_CREATED",
    "BOOKING_PAYMENT_CONFIRMED": "BOOKING_UPDATED",
    "BOOKING_UPDATED": "BOOKING_UPDATED",
    "BOOKING_CANCELLED": "BOOKING_CANCELLED",
    "RENEWAL_CREATED": "RENEWAL_CREATED",
    "RENEWAL_NOTIFICATION": "RENEWAL_NOTIFICATION",
    "RENEWAL_DUE": "RENEWAL_DUE",
    "RENEWAL_EXPIRED": "RENEWAL_EXPIRED",
    "WEBHOOK_TEST": "WEBHOOK_TEST",
}
MYCOVER_PURCHASE = "purchase.successful"
MYCOVER_RENEWAL = "renewal.successful"
MYCOVER_TEST = "webhook.test"

EVENT_NAMES = {
    XCOVER: sorted(set(XCOVER_EVENTS.values()) - {"WEBHOOK_TEST"}),
    MYCOVER: [MYCOVER_PURCHASE, MYCOVER_RENEWAL],
}

# A stable namespace so that a booking's MyCover customer id never changes.
_CUSTOMER_NAMESPACE = uuid.UUID("6c1e9d4e-7f0b-4c56-9d3e-3b8f0f2a8c11")


@dataclass(frozen=True)
class Message:
    """One webhook to send for one event: its name in the endpoint's format and its body."""

    name: str
    part: int


def messages_for(fmt: str, event_type: str, payload: dict[str, Any]) -> list[Message]:
    """The webhooks an event becomes in a format (none, one, or one per purchased quote)."""
    if fmt == XCOVER:
        name = XCOVER_EVENTS.get(event_type)
        return [] if name is None else [Message(name, 0)]
    if event_type == "WEBHOOK_TEST":
        return [Message(MYCOVER_TEST, 0)]
    if event_type == "RENEWAL_CREATED":
        return [Message(MYCOVER_RENEWAL, 0)]
    purchased = event_type == "BOOKING_PAYMENT_CONFIRMED" or (
        event_type == "BOOKING_CREATED" and payload.get("status") == "CONFIRMED"
    )
    if purchased:
        return [Message(MYCOVER_PURCHASE, index) for index in range(len(payload["quotes"]))]
    return []


def _xcover_booking(booking: dict[str, Any]) -> dict[str, Any]:
    quote_keys = (
        "id",
        "policy_start_date",
        "policy_end_date",
        "status",
        "price",
        "price_formatted",
    )
    quotes = []
    for quote in booking["quotes"]:
        item = {key: quote[key] for key in quote_keys}
        policy = quote["policy"]
        item["policy"] = {
            "policy_type": policy["policy_type"],
            "policy_name": policy["policy_name"],
            "policy_version": policy["policy_version"],
        }
        item["duration"] = quote["duration"]
        item["total_renewed_times"] = quote.get("total_renewed_times", 0)
        if "refund_value" in quote:
            item["refund_value"] = quote["refund_value"]
        quotes.append(item)
    return {
        "id": booking["id"],
        "status": booking["status"],
        "currency": booking["currency"],
        "total_price": booking["total_price"],
        "total_price_formatted": booking["total_price_formatted"],
        "partner_transaction_id": booking["partner_transaction_id"],
        "quotes": quotes,
    }


def _millis(text: str) -> str:
    """`2023-08-18T09:47:22.008Z`, MyCover's timestamps."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _mycover_purchase(name: str, booking: dict[str, Any], part: int) -> dict[str, Any]:
    quote = booking["quotes"][part]
    holder = booking.get("policyholder") or {}
    return {
        "event": name,
        "data": {
            "id": quote["id"],
            "amount": quote["price"],
            "status": "successful",
            "reference": booking["id"],
            "customer": {
                "id": str(uuid.uuid5(_CUSTOMER_NAMESPACE, booking["id"])),
                "first_name": holder.get("first_name"),
                "last_name": holder.get("last_name"),
                "email": holder.get("email"),
                "phone": holder.get("phone"),
            },
            "product_id": quote["policy"]["policy_version"],
            "created_at": _millis(booking["created_at"]),
            "updated_at": _millis(booking["updated_at"]),
            "policy_expiry_date": _millis(quote["policy_end_date"]),
        },
    }


def body_for(fmt: str, name: str, part: int, event_type: str, payload: dict[str, Any]) -> bytes:
    """The exact bytes of a webhook body; the same bytes on every retry."""
    document: dict[str, Any]
    if fmt == XCOVER:
        if event_type.startswith("RENEWAL_"):
            content = payload["renewal"]
        elif event_type == "WEBHOOK_TEST":
            content = payload
        else:
            content = _xcover_booking(payload)
        document = {"event": name, "payload": content}
    elif name == MYCOVER_PURCHASE:
        document = _mycover_purchase(name, payload, part)
    elif name == MYCOVER_RENEWAL:
        # Renewal events carry {"renewal": record, "booking": booking}: the renewed quote.
        booking = payload["booking"]
        renewal = payload["renewal"]
        index = next(
            (i for i, q in enumerate(booking["quotes"]) if q["id"] == renewal["quote_id"]), 0
        )
        document = _mycover_purchase(name, booking, index)
        if "amount" in payload:
            document["data"]["amount"] = payload["amount"]
    else:
        document = {"event": name, "data": payload}
    return js_json(document)


def _javascript_numbers(value: Any) -> Any:
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: _javascript_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_javascript_numbers(item) for item in value]
    return value


def js_json(document: Any) -> bytes:
    """What `JSON.stringify(JSON.parse(body))` gives back: compact, keys in order, non-ASCII
    unescaped, integral numbers without a fraction (`0`, not `0.0`)."""
    return orjson.dumps(_javascript_numbers(document))
