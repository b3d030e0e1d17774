"""Typed views of the API's JSON. Every model keeps the whole JSON it was made from in `raw`
(and `model["field"]` reads it), so fields the model does not name stay reachable.

JSON numbers with a fraction are parsed as `Decimal`, so amounts stay exact; date-times
become aware `datetime`s that keep the offset the server sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Generic, Iterator, List, Mapping, Optional, TypeVar

T = TypeVar("T")

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$"
)


def parse_datetime(value: Any) -> Optional[datetime]:
    """An RFC 3339 date-time as an aware `datetime` (UTC when it has no offset); None for
    None or text that is not one."""
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _zulu, sign, off_h, off_m = match.groups()
    tz = timezone.utc
    if sign:
        minutes = int(off_h) * 60 + int(off_m)
        tz = timezone(timedelta(minutes=-minutes if sign == "-" else minutes))
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError:
        return None


def _str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def _money(value: Any) -> Optional[Decimal]:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (int, str)):
        try:
            return Decimal(value)
        except ArithmeticError:
            return None
    if isinstance(value, float):
        return Decimal(repr(value))
    return None


def _int(value: Any) -> Optional[int]:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, (Decimal, float)) and value == int(value):
        return int(value)
    return None


def _float(value: Any) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    return None


def _bool(value: Any) -> Optional[bool]:
    return value if isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


class _RawAccess:
    """`model["field"]` and `model.get("field")` read the JSON the model was made from."""

    raw: Mapping[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The JSON field `key`, or `default`."""
        return self.raw.get(key, default)


def _raw() -> Any:
    """The `raw` field: left out of `repr` and of comparisons."""
    return field(repr=False, compare=False)


@dataclass(frozen=True)
class Policy(_RawAccess):
    """The product a quote is for: type, name, code, version and wording."""

    policy_type: Optional[str]
    policy_name: Optional[str]
    policy_code: Optional[str]
    policy_version: Optional[str]
    category: Optional[str]
    title: Optional[str]
    description: Optional[str]
    underwriter_name: Optional[str]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        content = _dict(data.get("content"))
        underwriter = _dict(data.get("underwriter"))
        return cls(
            policy_type=_str(data.get("policy_type")),
            policy_name=_str(data.get("policy_name")),
            policy_code=_str(data.get("policy_code")),
            policy_version=_str(data.get("policy_version")),
            category=_str(data.get("category")),
            title=_str(content.get("title")),
            description=_str(content.get("description")),
            underwriter_name=_str(underwriter.get("name")),
            raw=data,
        )


@dataclass(frozen=True)
class Renewal(_RawAccess):
    """A renewal record of a renewable policy. A renewal quote adds `price`,
    `price_formatted`, `policy_start_date`, `policy_end_date` and `policy_version`."""

    id: str
    package_id: Optional[str]
    quote_id: Optional[str]
    status: Optional[str]
    start_date: Optional[datetime]
    notification_date: Optional[datetime]
    due_date: Optional[datetime]
    expiry_date: Optional[datetime]
    cancelled_on: Optional[datetime]
    paid_on: Optional[datetime]
    created_at: Optional[datetime]
    price: Optional[Decimal]
    price_formatted: Optional[str]
    policy_start_date: Optional[datetime]
    policy_end_date: Optional[datetime]
    policy_version: Optional[str]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Renewal:
        return cls(
            id=str(data["id"]),
            package_id=_str(data.get("package_id")),
            quote_id=_str(data.get("quote_id")),
            status=_str(data.get("status")),
            start_date=parse_datetime(data.get("start_date")),
            notification_date=parse_datetime(data.get("notification_date")),
            due_date=parse_datetime(data.get("due_date")),
            expiry_date=parse_datetime(data.get("expiry_date")),
            cancelled_on=parse_datetime(data.get("cancelled_on")),
            paid_on=parse_datetime(data.get("paid_on")),
            created_at=parse_datetime(data.get("created_at")),
            price=_money(data.get("price")),
            price_formatted=_str(data.get("price_formatted")),
            policy_start_date=parse_datetime(data.get("policy_start_date")),
            policy_end_date=parse_datetime(data.get("policy_end_date")),
            policy_version=_str(data.get("policy_version")),
            raw=data,
        )


def _renewal(value: Any) -> Optional[Renewal]:
    return Renewal.from_json(value) if isinstance(value, Mapping) and "id" in value else None


@dataclass(frozen=True)
class Quote(_RawAccess):
    """One product of a quote package or a booking.

    Booking responses add `next_renewal`, `can_be_cancelled` and `total_renewed_times`; a
    priced modification adds `price_diff`; a cancellation adds `refund_value` and
    `adjustment_fee`. Fields a response does not carry are None.
    """

    id: str
    status: Optional[str]
    policy_start_date: Optional[datetime]
    policy_end_date: Optional[datetime]
    price: Optional[Decimal]
    price_formatted: Optional[str]
    policy: Optional[Policy]
    cover_amount: Optional[Decimal]
    duration: Optional[str]
    is_renewable: Optional[bool]
    pds_url: Optional[str]
    created_at: Optional[datetime]
    confirmed_at: Optional[datetime]
    updated_at: Optional[datetime]
    cancelled_at: Optional[datetime]
    next_renewal: Optional[Renewal]
    can_be_cancelled: Optional[bool]
    total_renewed_times: Optional[int]
    price_diff: Optional[Decimal]
    refund_value: Optional[Decimal]
    adjustment_fee: Optional[Decimal]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Quote:
        policy = data.get("policy")
        return cls(
            id=str(data["id"]),
            status=_str(data.get("status")),
            policy_start_date=parse_datetime(data.get("policy_start_date")),
            policy_end_date=parse_datetime(data.get("policy_end_date")),
            price=_money(data.get("price")),
            price_formatted=_str(data.get("price_formatted")),
            policy=Policy.from_json(policy) if isinstance(policy, Mapping) else None,
            cover_amount=_money(data.get("cover_amount")),
            duration=_str(data.get("duration")),
            is_renewable=_bool(data.get("is_renewable")),
            pds_url=_str(data.get("pds_url")),
            created_at=parse_datetime(data.get("created_at")),
            confirmed_at=parse_datetime(data.get("confirmed_at")),
            updated_at=parse_datetime(data.get("updated_at")),
            cancelled_at=parse_datetime(data.get("cancelled_at")),
            next_renewal=_renewal(data.get("next_renewal")),
            can_be_cancelled=_bool(data.get("can_be_cancelled")),
            total_renewed_times=_int(data.get("total_renewed_times")),
            price_diff=_money(data.get("price_diff")),
            refund_value=_money(data.get("refund_value")),
            adjustment_fee=_money(data.get("adjustment_fee")),
            raw=data,
        )


@dataclass(frozen=True)
class QuotePackage(_RawAccess):
    """A quote package (`XXXXX-XXXXX-INS`) before it is booked.

    `quotes` keeps the server's order ("0", "1", …); a product that could not be priced is
    None there, with the reason in `errors` under its position.
    """

    id: str
    status: str
    currency: str
    total_price: Optional[Decimal]
    total_price_formatted: Optional[str]
    partner_transaction_id: Optional[str]
    created_at: Optional[datetime]
    updated_at: Optional[datetime]
    pds_url: Optional[str]
    security_token: Optional[str]
    quotes: List[Optional[Quote]]
    errors: Mapping[str, Any]
    raw: Mapping[str, Any] = _raw()

    @property
    def priced_quotes(self) -> List[Quote]:
        """The quotes that could be priced, in order."""
        return [quote for quote in self.quotes if quote is not None]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> QuotePackage:
        raw_quotes = data.get("quotes")
        if isinstance(raw_quotes, Mapping):
            items = [raw_quotes[key] for key in sorted(raw_quotes, key=_position)]
        else:
            items = _list(raw_quotes)
        return cls(
            id=str(data["id"]),
            status=str(data.get("status")),
            currency=str(data.get("currency")),
            total_price=_money(data.get("total_price")),
            total_price_formatted=_str(data.get("total_price_formatted")),
            partner_transaction_id=_str(data.get("partner_transaction_id")),
            created_at=parse_datetime(data.get("created_at")),
            updated_at=parse_datetime(data.get("updated_at")),
            pds_url=_str(data.get("pds_url")),
            security_token=_str(data.get("security_token")),
            quotes=[Quote.from_json(q) if isinstance(q, Mapping) else None for q in items],
            errors=_dict(data.get("errors")),
            raw=data,
        )


def _position(key: Any) -> tuple[int, str]:
    text = str(key)
    return (int(text), text) if text.isdigit() else (1 << 30, text)


@dataclass(frozen=True)
class Policyholder(_RawAccess):
    """The customer a booking covers."""

    first_name: Optional[str]
    middle_name: Optional[str]
    last_name: Optional[str]
    email: Optional[str]
    phone: Optional[str]
    country: Optional[str]
    region: Optional[str]
    city: Optional[str]
    postcode: Optional[str]
    address1: Optional[str]
    address2: Optional[str]
    company: Optional[str]
    age: Optional[int]
    birth_date: Optional[str]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policyholder:
        return cls(
            first_name=_str(data.get("first_name")),
            middle_name=_str(data.get("middle_name")),
            last_name=_str(data.get("last_name")),
            email=_str(data.get("email")),
            phone=_str(data.get("phone")),
            country=_str(data.get("country")),
            region=_str(data.get("region")),
            city=_str(data.get("city")),
            postcode=_str(data.get("postcode")),
            address1=_str(data.get("address1")),
            address2=_str(data.get("address2")),
            company=_str(data.get("company")),
            age=_int(data.get("age")),
            birth_date=_str(data.get("birth_date")),
            raw=data,
        )


@dataclass(frozen=True)
class Booking(_RawAccess):
    """A booked quote package.

    The answers of a few operations are a booking with extras: `quote_for_update` adds
    `update_id` and `total_price_diff` (and each quote's `price_diff`); the renewal
    operations add `renewal_id` and `renewal`; `update_expires_at` says until when a priced
    change can be confirmed. Webhook payloads of the `xcover` format are
    a booking with fewer fields; the missing ones are None.
    """

    id: str
    status: str
    currency: Optional[str]
    total_price: Optional[Decimal]
    total_price_formatted: Optional[str]
    total_tax: Optional[Decimal]
    total_premium: Optional[Decimal]
    partner_transaction_id: Optional[str]
    created_at: Optional[datetime]
    updated_at: Optional[datetime]
    pds_url: Optional[str]
    security_token: Optional[str]
    coi_url: Optional[str]
    policyholder: Optional[Policyholder]
    quotes: List[Quote]
    update_id: Optional[str]
    update_expires_at: Optional[datetime]
    total_price_diff: Optional[Decimal]
    renewal_id: Optional[str]
    renewal: Optional[Renewal]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Booking:
        holder = data.get("policyholder")
        raw_quotes = data.get("quotes")
        if isinstance(raw_quotes, Mapping):
            raw_quotes = [raw_quotes[key] for key in sorted(raw_quotes, key=_position)]
        return cls(
            id=str(data["id"]),
            status=str(data.get("status")),
            currency=_str(data.get("currency")),
            total_price=_money(data.get("total_price")),
            total_price_formatted=_str(data.get("total_price_formatted")),
            total_tax=_money(data.get("total_tax")),
            total_premium=_money(data.get("total_premium")),
            partner_transaction_id=_str(data.get("partner_transaction_id")),
            created_at=parse_datetime(data.get("created_at")),
            updated_at=parse_datetime(data.get("updated_at")),
            pds_url=_str(data.get("pds_url")),
            security_token=_str(data.get("security_token")),
            coi_url=_str(_dict(data.get("coi")).get("url")),
            policyholder=Policyholder.from_json(holder) if isinstance(holder, Mapping) else None,
            quotes=[Quote.from_json(q) for q in _list(raw_quotes) if isinstance(q, Mapping)],
            update_id=_str(data.get("update_id")),
            update_expires_at=parse_datetime(data.get("update_expires_at")),
            total_price_diff=_money(data.get("total_price_diff")),
            renewal_id=_str(data.get("renewal_id")),
            renewal=_renewal(data.get("renewal")),
            raw=data,
        )


@dataclass(frozen=True)
class Cancellation(_RawAccess):
    """The answer to a cancellation: a preview (`cancellation_id` and `confirm_before` set,
    nothing cancelled yet) or a cancellation carried out. Each cancelled quote carries its
    `refund_value` and `adjustment_fee`."""

    id: str
    status: str
    currency: Optional[str]
    cancellation_id: Optional[str]
    confirm_before: Optional[datetime]
    total_refund: Optional[Decimal]
    total_refund_formatted: Optional[str]
    total_price: Optional[Decimal]
    total_price_formatted: Optional[str]
    policyholder: Optional[Policyholder]
    quotes: List[Quote]
    raw: Mapping[str, Any] = _raw()

    @property
    def is_preview(self) -> bool:
        """True for a preview, which has cancelled nothing yet."""
        return self.cancellation_id is not None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cancellation:
        holder = data.get("policyholder")
        return cls(
            id=str(data["id"]),
            status=str(data.get("status")),
            currency=_str(data.get("currency")),
            cancellation_id=_str(data.get("cancellation_id")),
            confirm_before=parse_datetime(data.get("confirm_before")),
            total_refund=_money(data.get("total_refund")),
            total_refund_formatted=_str(data.get("total_refund_formatted")),
            total_price=_money(data.get("total_price")),
            total_price_formatted=_str(data.get("total_price_formatted")),
            policyholder=Policyholder.from_json(holder) if isinstance(holder, Mapping) else None,
            quotes=[
                Quote.from_json(q) for q in _list(data.get("quotes")) if isinstance(q, Mapping)
            ],
            raw=data,
        )


@dataclass(frozen=True)
class Instalment(_RawAccess):
    """One payment of a quote paid by instalments."""

    id: str
    number: int
    quote_id: Optional[str]
    status: Optional[str]
    period_start_date: Optional[datetime]
    period_end_date: Optional[datetime]
    total_amount: Optional[Decimal]
    commission: Optional[Decimal]
    payment_failures: List[Any]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Instalment:
        return cls(
            id=str(data["id"]),
            number=_int(data.get("number")) or 0,
            quote_id=_str(data.get("quote")),
            status=_str(data.get("status")),
            period_start_date=parse_datetime(data.get("period_start_date")),
            period_end_date=parse_datetime(data.get("period_end_date")),
            total_amount=_money(data.get("total_amount")),
            commission=_money(data.get("commission")),
            payment_failures=_list(data.get("payment_failures")),
            raw=data,
        )


@dataclass(frozen=True)
class InstalmentSchedule(_RawAccess):
    """The instalments of one quote: what is paid, what is due, what comes next."""

    quote_id: str
    next_payment: Optional[Instalment]
    paid_until: Optional[datetime]
    payment_schedule: List[Instalment]
    total_amount_paid: Optional[Decimal]
    total_amount_due: Optional[Decimal]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> InstalmentSchedule:
        upcoming = data.get("next_payment")
        return cls(
            quote_id=str(data["id"]),
            next_payment=Instalment.from_json(upcoming) if isinstance(upcoming, Mapping) else None,
            paid_until=parse_datetime(data.get("paid_until")),
            payment_schedule=[
                Instalment.from_json(item)
                for item in _list(data.get("payment_schedule"))
                if isinstance(item, Mapping)
            ],
            total_amount_paid=_money(data.get("total_amount_paid")),
            total_amount_due=_money(data.get("total_amount_due")),
            raw=data,
        )


@dataclass(frozen=True)
class Instalments(_RawAccess):
    """The instalment schedules of a booking, one per quote paid by instalments."""

    currency: Optional[str]
    quotes: List[InstalmentSchedule]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Instalments:
        return cls(
            currency=_str(data.get("currency")),
            quotes=[
                InstalmentSchedule.from_json(item)
                for item in _list(data.get("quotes"))
                if isinstance(item, Mapping)
            ],
            raw=data,
        )


@dataclass(frozen=True)
class Page(_RawAccess, Generic[T]):
    """One page of a list: `count` is the total over every page."""

    count: int
    results: List[T]
    next: Optional[str]
    previous: Optional[str]
    raw: Mapping[str, Any] = _raw()

    def __iter__(self) -> Iterator[T]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class WebhookEndpoint(_RawAccess):
    """A webhook endpoint. `key` and `secret` are only in the answers that reveal them
    (creation, `rotate_secret`); for the `mycover` scheme the secret is the partner's secret
    API key and `key` is None."""

    id: str
    url: str
    description: Optional[str]
    enabled: bool
    events: Optional[List[str]]
    format: str
    signature: str
    mode: Optional[str]
    retry_schedule: Optional[List[float]]
    timeout_seconds: Optional[float]
    max_concurrency: Optional[int]
    disabled_reason: Optional[str]
    failing_since: Optional[datetime]
    created_at: Optional[datetime]
    updated_at: Optional[datetime]
    key: Optional[str]
    secret: Optional[str]
    previous_secret_expires_at: Optional[datetime]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookEndpoint:
        events = data.get("events")
        schedule = data.get("retry_schedule")
        return cls(
            id=str(data["id"]),
            url=str(data.get("url")),
            description=_str(data.get("description")),
            enabled=bool(data.get("enabled")),
            events=[str(e) for e in events] if isinstance(events, list) else None,
            format=str(data.get("format")),
            signature=str(data.get("signature")),
            mode=_str(data.get("mode")),
            retry_schedule=[float(s) for s in schedule] if isinstance(schedule, list) else None,
            timeout_seconds=_float(data.get("timeout_seconds")),
            max_concurrency=_int(data.get("max_concurrency")),
            disabled_reason=_str(data.get("disabled_reason")),
            failing_since=parse_datetime(data.get("failing_since")),
            created_at=parse_datetime(data.get("created_at")),
            updated_at=parse_datetime(data.get("updated_at")),
            key=_str(data.get("key")),
            secret=_str(data.get("secret")),
            previous_secret_expires_at=parse_datetime(data.get("previous_secret_expires_at")),
            raw=data,
        )


@dataclass(frozen=True)
class WebhookSecret(_RawAccess):
    """An endpoint's signing material: its scheme, `key` (None for `mycover`) and secret."""

    id: str
    signature: str
    key: Optional[str]
    secret: str
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookSecret:
        return cls(
            id=str(data["id"]),
            signature=str(data.get("signature")),
            key=_str(data.get("key")),
            secret=str(data.get("secret")),
            raw=data,
        )


@dataclass(frozen=True)
class WebhookAttempt(_RawAccess):
    """One attempt to deliver a webhook: when, how long, what came back."""

    attempted_at: Optional[datetime]
    duration_ms: Optional[int]
    status_code: Optional[int]
    request_headers: Mapping[str, Any]
    response_excerpt: Optional[str]
    error: Optional[str]
    # The API request (or worker job) whose change this webhook announces.
    request_id: Optional[str]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookAttempt:
        return cls(
            attempted_at=parse_datetime(data.get("attempted_at")),
            duration_ms=_int(data.get("duration_ms")),
            status_code=_int(data.get("status_code")),
            request_headers=_dict(data.get("request_headers")),
            response_excerpt=_str(data.get("response_excerpt")),
            error=_str(data.get("error")),
            request_id=_str(data.get("request_id")),
            raw=data,
        )


@dataclass(frozen=True)
class WebhookDelivery(_RawAccess):
    """A webhook sent (or to be sent) to an endpoint. `payload` and `attempts_log` are only
    in the answer for one delivery."""

    id: str
    event: str
    event_id: Optional[str]
    resource_id: Optional[str]
    status: str
    attempts: int
    next_attempt_at: Optional[datetime]
    last_status_code: Optional[int]
    last_error: Optional[str]
    created_at: Optional[datetime]
    completed_at: Optional[datetime]
    payload: Optional[Mapping[str, Any]]
    attempts_log: List[WebhookAttempt]
    # The API request (or worker job) whose change this webhook announces.
    request_id: Optional[str]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookDelivery:
        payload = data.get("payload")
        return cls(
            id=str(data["id"]),
            event=str(data.get("event")),
            event_id=_str(data.get("event_id")),
            resource_id=_str(data.get("resource_id")),
            status=str(data.get("status")),
            attempts=_int(data.get("attempts")) or 0,
            next_attempt_at=parse_datetime(data.get("next_attempt_at")),
            last_status_code=_int(data.get("last_status_code")),
            last_error=_str(data.get("last_error")),
            created_at=parse_datetime(data.get("created_at")),
            completed_at=parse_datetime(data.get("completed_at")),
            payload=dict(payload) if isinstance(payload, Mapping) else None,
            attempts_log=[
                WebhookAttempt.from_json(item)
                for item in _list(data.get("attempts_log"))
                if isinstance(item, Mapping)
            ],
            request_id=_str(data.get("request_id")),
            raw=data,
        )


@dataclass(frozen=True)
class Redelivery(_RawAccess):
    """A delivery queued again: its id and status."""

    id: str
    status: str
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Redelivery:
        return cls(id=str(data["id"]), status=str(data.get("status")), raw=data)


@dataclass(frozen=True)
class Recovery(_RawAccess):
    """How many failed deliveries `recover` queued again."""

    recovered: int
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recovery:
        return cls(recovered=_int(data.get("recovered")) or 0, raw=data)


@dataclass(frozen=True)
class ClockTransition(_RawAccess):
    """A renewal transition the sandbox clock ran on its way (RENEWAL_DUE, …)."""

    event: str
    renewal_id: Optional[str]
    booking_id: Optional[str]
    at: Optional[datetime]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClockTransition:
        return cls(
            event=str(data.get("event")),
            renewal_id=_str(data.get("renewal_id")),
            booking_id=_str(data.get("booking_id")),
            at=parse_datetime(data.get("at")),
            raw=data,
        )


@dataclass(frozen=True)
class SandboxClock(_RawAccess):
    """The sandbox's time; after a move, the transitions it ran, in order."""

    now: datetime
    offset_seconds: float
    transitions: List[ClockTransition]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SandboxClock:
        now = parse_datetime(data.get("now"))
        if now is None:
            raise ValueError(f"The clock's time {data.get('now')!r} is not RFC 3339.")
        return cls(
            now=now,
            offset_seconds=_float(data.get("offset_seconds")) or 0.0,
            transitions=[
                ClockTransition.from_json(item)
                for item in _list(data.get("transitions"))
                if isinstance(item, Mapping)
            ],
            raw=data,
        )


@dataclass(frozen=True)
class ApiKey(_RawAccess):
    """An API key of the calling mode. `api_secret` is only in the answer that creates it;
    `current` tells the key this client signs with."""

    api_key: str
    mode: Optional[str]
    status: Optional[str]
    created_at: Optional[datetime]
    revoked_at: Optional[datetime]
    current: Optional[bool]
    api_secret: Optional[str]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApiKey:
        return cls(
            api_key=str(data["api_key"]),
            mode=_str(data.get("mode")),
            status=_str(data.get("status")),
            created_at=parse_datetime(data.get("created_at")),
            revoked_at=parse_datetime(data.get("revoked_at")),
            current=_bool(data.get("current")),
            api_secret=_str(data.get("api_secret")),
            raw=data,
        )


@dataclass(frozen=True)
class Country(_RawAccess):
    """An ISO 3166-1 country with its currency and calling code."""

    code: str
    alpha3: Optional[str]
    name: str
    official_name: Optional[str]
    numeric: Optional[str]
    currency: Optional[str]
    calling_code: Optional[str]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Country:
        return cls(
            code=str(data["code"]),
            alpha3=_str(data.get("alpha3")),
            name=str(data.get("name")),
            official_name=_str(data.get("official_name")),
            numeric=_str(data.get("numeric")),
            currency=_str(data.get("currency")),
            calling_code=_str(data.get("calling_code")),
            raw=data,
        )


@dataclass(frozen=True)
class Currency(_RawAccess):
    """An ISO 4217 currency with its minor units and symbol."""

    code: str
    name: str
    numeric: Optional[str]
    minor_units: Optional[int]
    symbol: Optional[str]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Currency:
        return cls(
            code=str(data["code"]),
            name=str(data.get("name")),
            numeric=_str(data.get("numeric")),
            minor_units=_int(data.get("minor_units")),
            symbol=_str(data.get("symbol")),
            raw=data,
        )


@dataclass(frozen=True)
class Language(_RawAccess):
    """An ISO 639-1 language."""

    code: str
    name: str
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Language:
        return cls(code=str(data["code"]), name=str(data.get("name")), raw=data)


@dataclass(frozen=True)
class Region(_RawAccess):
    """An ISO 3166-2 subdivision; Nigerian states and the FCT list their local government
    areas."""

    code: str
    name: str
    type: Optional[str]
    parent_code: Optional[str]
    local_government_areas: Optional[List[str]]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Region:
        areas = data.get("local_government_areas")
        return cls(
            code=str(data["code"]),
            name=str(data.get("name")),
            type=_str(data.get("type")),
            parent_code=_str(data.get("parent_code")),
            local_government_areas=[str(a) for a in areas] if isinstance(areas, list) else None,
            raw=data,
        )


@dataclass(frozen=True)
class Message(_RawAccess):
    """An e-mail or SMS for a booking's customer: `event` is its kind (such as
    `booking_confirmation`), `status` one of stored, queued, sending, sent, failed,
    cancelled. `send_email` answers with `id`, `event` and `status` only."""

    id: str
    booking_id: Optional[str]
    event: Optional[str]
    source_event: Optional[str]
    channel: Optional[str]
    language: Optional[str]
    recipient: Optional[str]
    subject: Optional[str]
    text: Optional[str]
    html: Optional[str]
    status: Optional[str]
    attempts: Optional[int]
    error: Optional[str]
    scheduled_at: Optional[datetime]
    created_at: Optional[datetime]
    sent_at: Optional[datetime]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            id=str(data["id"]),
            booking_id=_str(_first(data, "booking", "booking_id")),
            event=_str(data.get("event")),
            source_event=_str(data.get("source_event")),
            channel=_str(data.get("channel")),
            language=_str(data.get("language")),
            recipient=_str(data.get("recipient")),
            subject=_str(data.get("subject")),
            text=_str(data.get("text")),
            html=_str(data.get("html")),
            status=_str(data.get("status")),
            attempts=_int(data.get("attempts")),
            error=_str(data.get("error")),
            scheduled_at=parse_datetime(data.get("scheduled_at")),
            created_at=parse_datetime(data.get("created_at")),
            sent_at=parse_datetime(data.get("sent_at")),
            raw=data,
        )


def _first(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if data.get(name) is not None:
            return data[name]
    return None


@dataclass(frozen=True)
class Customer(_RawAccess):
    """The customer of a MyCover.ai webhook."""

    id: Optional[str]
    first_name: Optional[str]
    last_name: Optional[str]
    email: Optional[str]
    phone: Optional[str]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Customer:
        return cls(
            id=_str(data.get("id")),
            first_name=_str(data.get("first_name")),
            last_name=_str(data.get("last_name")),
            email=_str(data.get("email")),
            phone=_str(data.get("phone")),
            raw=data,
        )


@dataclass(frozen=True)
class Purchase(_RawAccess):
    """The `data` of MyCover.ai's `purchase.successful` and `renewal.successful`: one quote
    (`id`) of a booking (`reference`)."""

    id: str
    amount: Optional[Decimal]
    status: Optional[str]
    reference: Optional[str]
    customer: Optional[Customer]
    product_id: Optional[str]
    created_at: Optional[datetime]
    updated_at: Optional[datetime]
    policy_expiry_date: Optional[datetime]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Purchase:
        customer = data.get("customer")
        return cls(
            id=str(data["id"]),
            amount=_money(data.get("amount")),
            status=_str(data.get("status")),
            reference=_str(data.get("reference")),
            customer=Customer.from_json(customer) if isinstance(customer, Mapping) else None,
            product_id=_str(data.get("product_id")),
            created_at=parse_datetime(data.get("created_at")),
            updated_at=parse_datetime(data.get("updated_at")),
            policy_expiry_date=parse_datetime(data.get("policy_expiry_date")),
            raw=data,
        )


@dataclass(frozen=True)
class WebhookEvent(_RawAccess):
    """A verified webhook.

    `type` is the event's name (`BOOKING_CREATED`, `purchase.successful`, …), `format` the
    body's format (`xcover` or `mycover`), `data` the body's `payload` (xcover) or `data`
    (mycover), `id` the `webhook-id` header (the same on every retry of one delivery: use it
    to drop duplicates) and `timestamp` the `webhook-timestamp` header. According to the
    event, `booking` (xcover BOOKING_*), `renewal` (xcover RENEWAL_*) or `purchase`
    (mycover) holds the typed payload.
    """

    type: str
    format: str
    scheme: str
    id: Optional[str]
    timestamp: Optional[datetime]
    data: Mapping[str, Any]
    booking: Optional[Booking]
    renewal: Optional[Renewal]
    purchase: Optional[Purchase]
    raw: Mapping[str, Any] = _raw()

    @classmethod
    def from_body(
        cls,
        document: Mapping[str, Any],
        *,
        scheme: str,
        webhook_id: Optional[str],
        timestamp: Optional[datetime],
    ) -> WebhookEvent:
        name = str(document.get("event"))
        if "payload" in document:
            fmt, data = "xcover", _dict(document.get("payload"))
        else:
            fmt, data = "mycover", _dict(document.get("data"))
        booking = renewal = purchase = None
        if fmt == "xcover" and name.startswith("BOOKING_") and "id" in data:
            booking = Booking.from_json(data)
        elif fmt == "xcover" and name.startswith("RENEWAL_"):
            renewal = _renewal(data)
        elif fmt == "mycover" and name.endswith(".successful") and "id" in data:
            purchase = Purchase.from_json(data)
        return cls(
            type=name,
            format=fmt,
            scheme=scheme,
            id=webhook_id,
            timestamp=timestamp,
            data=data,
            booking=booking,
            renewal=renewal,
            purchase=purchase,
            raw=document,
        )


def page_of(data: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], T]) -> Page[T]:
    """A `{count, next, previous, results}` answer, each result parsed with `parse`."""
    items = _list(data.get("results"))
    return Page(
        count=_int(data.get("count")) or 0,
        results=[parse(item) for item in items if isinstance(item, Mapping)],
        next=_str(data.get("next")),
        previous=_str(data.get("previous")),
        raw=data,
    )
