"""What a partner receives: outbox events in XCover's and MyCover.ai's webhook formats
(API-CONTRACT §8 and the examples in the source documents)."""

from __future__ import annotations

import math
import re
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


def sent_body(
    stored: bytes | None,
    fmt: str,
    name: str,
    part: int,
    event_type: str,
    payload: dict[str, Any] | None,
) -> bytes:
    """What a delivery sends: the body stored when its event committed, or, for a delivery
    made before bodies were stored (or whose rendering failed then), the body rendered now."""
    if stored is not None:
        return stored
    assert payload is not None
    return body_for(fmt, name, part, event_type, payload)


# Past 2**53 a JavaScript number is a double: integers there are read as JSON.parse reads them.
_EXACT_INTEGERS = 2**53
# ECMAScript orders integer-like keys ("0", "7", not "07") of an object before the others.
_ARRAY_INDEX = re.compile(r"^(?:0|[1-9][0-9]*)$")
_MAX_ARRAY_INDEX = 2**32 - 2
_SURROGATE = re.compile("[\ud800-\udfff]")


def js_number(value: float) -> str:
    """`Number.prototype.toString` (ECMA-262 Number::toString) of a double: the shortest
    digits that round-trip, as Python's repr finds them, laid out by JavaScript's rules."""
    if not math.isfinite(value):
        return "null"  # what JSON.stringify makes of Infinity and NaN
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    all_digits = whole + fraction
    digits = all_digits.lstrip("0")
    # value = int(digits) * 10 ** (n - k): n digits stand before the decimal point.
    n = len(whole) + int(exponent or 0) - (len(all_digits) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        power = f"e{'+' if n >= 1 else '-'}{abs(n - 1)}"
        text = digits + power if k == 1 else f"{digits[0]}.{digits[1:]}{power}"
    return sign + text


def _utf16(text: str) -> str:
    """The string JavaScript holds: a high and a low surrogate side by side are one character."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _js_string(text: str) -> bytes:
    """JSON.stringify escapes a lone surrogate as `\\udxxx`; orjson refuses to encode one."""
    text = _utf16(text)
    parts, position = [], 0
    for match in _SURROGATE.finditer(text):
        parts.append(orjson.dumps(text[position : match.start()])[1:-1])
        parts.append(f"\\u{ord(match.group()):04x}".encode())
        position = match.end()
    parts.append(orjson.dumps(text[position:])[1:-1])
    return b'"' + b"".join(parts) + b'"'


def _key_order(key: str) -> tuple[int, int]:
    if _ARRAY_INDEX.fullmatch(key) and int(key) <= _MAX_ARRAY_INDEX:
        return (0, int(key))
    return (1, 0)


def _javascript(value: Any) -> Any:
    """The document as JavaScript holds it, in what orjson writes as JSON.stringify does."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if abs(value) <= _EXACT_INTEGERS:
            return value
        try:
            return orjson.Fragment(js_number(float(value)))
        except OverflowError:
            return orjson.Fragment(b"null")  # past the largest double: Infinity
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < _EXACT_INTEGERS:
            return int(value)
        return orjson.Fragment(js_number(value))
    if isinstance(value, str):
        return orjson.Fragment(_js_string(value)) if _SURROGATE.search(value) else value
    if isinstance(value, dict):
        if any(_SURROGATE.search(key) for key in value):
            # Keys that are one string to JavaScript are one key: the first one's place, the
            # last one's value, as JSON.parse keeps a repeated key.
            value = {_utf16(key): item for key, item in value.items()}
        keys = list(value)
        if any(_ARRAY_INDEX.fullmatch(key) for key in keys):
            keys.sort(key=_key_order)  # stable: the other keys keep their order
        if any(_SURROGATE.search(key) for key in keys):
            members = b",".join(
                _js_string(key) + b":" + orjson.dumps(_javascript(value[key])) for key in keys
            )
            return orjson.Fragment(b"{" + members + b"}")
        return {key: _javascript(value[key]) for key in keys}
    if isinstance(value, (list, tuple)):
        return [_javascript(item) for item in value]
    return value


# Between these bounds orjson writes a fraction's shortest digits as JavaScript does.
_PLAIN_FRACTIONS = (1e-4, 1e15)
_DIGITS = frozenset("0123456789")


def _plain(value: Any) -> Any:
    """`_javascript` for the documents webhooks carry: only what orjson would write otherwise
    than JavaScript is rewritten (integral floats, big numbers, integer-like keys). Strings are
    left to orjson, which refuses surrogates: `js_json` then takes the long way."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, dict):
        if any(key[:1] in _DIGITS for key in value):
            return _javascript(value)
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _EXACT_INTEGERS:
            return int(value)
        if _PLAIN_FRACTIONS[0] <= abs(value) < _PLAIN_FRACTIONS[1]:
            return value
    elif isinstance(value, int) and abs(value) <= _EXACT_INTEGERS:
        return value
    return _javascript(value)


def js_json(document: Any) -> bytes:
    """What `JSON.stringify(JSON.parse(body))` gives back for this body: compact, keys in
    JavaScript's order (integer-like keys first), non-ASCII unescaped, numbers as JavaScript
    writes them (`0` not `0.0`, `1e+21`, integers past 2**53 rounded to a double). A Python
    int and float of the same value are the same JavaScript number, and written alike."""
    try:
        return orjson.dumps(_plain(document))
    except orjson.JSONEncodeError:
        # A surrogate somewhere (lone, or a pair JavaScript reads as one character).
        return orjson.dumps(_javascript(document))
