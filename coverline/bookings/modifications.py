"""Modifications of a booking that change its price (API-CONTRACT §6).

`quote_for_update` prices a change and stores it, changing nothing else; the answer shows
the booking as it would be, with each quote's `price_diff` and the `update_id`.
`confirm_update` applies exactly what was priced, if the update is still open: not expired
(24 hours), not confirmed before, and the booking unchanged since it was priced. Direct
changes that do not touch the price stay with `PATCH bookings/{id}/`.

Quotes are re-priced with the product version they were sold with, in the booking's
currency and customer country.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.bookings.instalments import load_schedules
from coverline.bookings.models import BookingUpdate
from coverline.bookings.service import Render, _emit, load_booking
from coverline.catalog.definition import COMMON_REQUEST_FIELDS, ProductDefinition
from coverline.catalog.rating import FxTable, RatingError, policy_end, rate, validate_fields
from coverline.catalog.service import Catalog
from coverline.events.service import EventType
from coverline.kit import ids
from coverline.kit.dates import offset_minutes, parse_rfc3339, server_time, with_offset
from coverline.kit.errors import NON_FIELD_ERRORS, Conflict, NotFound, ValidationFailed
from coverline.kit.money import from_minor
from coverline.quotes.models import Policyholder, Quote, QuotePackage
from coverline.quotes.presenter import booked_quotes
from coverline.quotes.schemas import PolicyholderPatchIn
from coverline.quotes.service import START_TOLERANCE, Scope, apply_rating
from coverline.renewals.service import paid_periods, quote_changed

UPDATE_TTL = timedelta(hours=24)
_HOLDER_COLUMNS = sorted(column.key for column in inspect(Policyholder).column_attrs)
QUOTED = "QUOTED"
CONFIRMED = "CONFIRMED"


class QuoteChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(max_length=36)
    update_fields: dict[str, Any] = Field(
        default_factory=dict,
        description="Product fields to change, and optionally policy_start_date.",
    )
    insured: list[dict[str, Any]] | None = Field(default=None, max_length=100)


class BookingUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quotes: list[QuoteChangeIn] = Field(default_factory=list, max_length=20)
    policyholder: PolicyholderPatchIn | None = None


@dataclass
class PricedUpdate:
    """A booking as an update would leave it (detached copies: nothing is applied)."""

    update: BookingUpdate
    preview: QuotePackage
    price_diffs: dict[str, Decimal]


def fingerprint(package: QuotePackage) -> str:
    """What a priced change depends on: the booking's status, its policyholder (a change
    confirmed later must not undo a direct one made since) and its booked quotes."""
    holder = package.policyholder
    state: list[Any] = [
        package.status,
        package.partner_transaction_id,
        None if holder is None else [getattr(holder, name) for name in _HOLDER_COLUMNS],
    ]
    for quote in booked_quotes(package):
        state.append(
            [
                quote.id,
                quote.status,
                quote.price_minor,
                server_time(quote.start_at),
                server_time(quote.end_at),
                quote.fields,
                quote.insured,
                quote.total_renewed_times,
                server_time(quote.updated_at),
            ]
        )
    canonical = json.dumps(state, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _detached(quote: Quote) -> Quote:
    return Quote(**{c.key: getattr(quote, c.key) for c in inspect(Quote).column_attrs})


def _preview(
    package: QuotePackage, changed: dict[str, Quote], holder: dict[str, Any]
) -> QuotePackage:
    mapper = inspect(QuotePackage)
    copy = QuotePackage(**{c.key: getattr(package, c.key) for c in mapper.column_attrs})
    for relationship in mapper.relationships:
        if relationship.key == "quotes" or relationship._reverse_property:
            continue
        value = getattr(package, relationship.key)
        if relationship.key == "policyholder" and value is not None:
            value = Policyholder(
                **{c.key: getattr(value, c.key) for c in inspect(Policyholder).column_attrs},
            )
            for name, new in holder.items():
                setattr(value, name, new)
        setattr(copy, relationship.key, list(value) if isinstance(value, list) else value)
    copy.quotes = [changed.get(quote.id) or _detached(quote) for quote in package.quotes]
    return copy


def _holder_changes(data: BookingUpdateIn) -> dict[str, Any]:
    if data.policyholder is None:
        return {}
    changes = data.policyholder.model_dump(exclude_unset=True)
    if changes.get("birth_date") is not None:
        changes["birth_date"] = changes["birth_date"].isoformat()
    if "allow_updates" in changes:
        changes["allow_updates"] = bool(changes["allow_updates"])
    return changes


def _require_changeable(package: QuotePackage) -> None:
    if package.status == "CANCELLED":
        raise Conflict(f"Booking {package.id} is cancelled.")
    if package.status == "PENDING_PAYMENT":
        raise Conflict(f"Booking {package.id} is pending payment; confirm the payment first.")


def _targets(package: QuotePackage, data: BookingUpdateIn, now: datetime) -> list[Quote]:
    """The quotes to change, in request order; 422 for unknown ones, 409 for closed ones."""
    booked = {quote.id: quote for quote in booked_quotes(package)}
    errors: dict[str, Any] = {}
    seen: set[str] = set()
    for index, item in enumerate(data.quotes):
        if item.id not in booked:
            errors[str(index)] = {"id": [f"Quote {item.id} is not in booking {package.id}."]}
        elif item.id in seen:
            errors[str(index)] = {"id": [f"Quote {item.id} is listed twice."]}
        elif not item.update_fields and item.insured is None:
            errors[str(index)] = {"update_fields": ["Nothing to change."]}
        seen.add(item.id)
    if errors:
        raise ValidationFailed(errors={"quotes": errors})
    quotes = [booked[item.id] for item in data.quotes]
    for quote in quotes:
        if quote.status != "CONFIRMED":
            raise Conflict(f"Quote {quote.id} is {quote.status.lower()}; it cannot be changed.")
        if quote.end_at <= now:
            raise Conflict(f"The cover of quote {quote.id} has ended; it cannot be changed.")
        periods = paid_periods(quote, package.renewals)
        if len(periods) > 1 and periods[-1].start > now:
            raise Conflict(
                f"Quote {quote.id} is renewed for a period that has not started; it can be "
                "changed once that period starts."
            )
    return quotes


def _start(
    quote: Quote, change: dict[str, Any], now: datetime, problems: dict[str, Any]
) -> datetime:
    current = with_offset(quote.start_at, quote.start_offset)
    if "policy_start_date" not in change:
        return current
    text = change["policy_start_date"]
    try:
        start = parse_rfc3339(text) if isinstance(text, str) else None
    except ValueError:
        start = None
    if start is None:
        problems["policy_start_date"] = [f"'{text}' is not an RFC 3339 date-time."]
    elif start != current and quote.start_at <= now:
        problems["policy_start_date"] = ["The cover has started; its start date cannot change."]
    elif start < now - START_TOLERANCE:
        problems["policy_start_date"] = ["The policy start date cannot be in the past."]
    else:
        return start
    return current


def _price_change(
    quote: Quote,
    item: QuoteChangeIn,
    definition: ProductDefinition,
    package: QuotePackage,
    fx: FxTable,
    now: datetime,
) -> tuple[Quote | None, dict[str, Any]]:
    """The quote as the change leaves it (detached), or the problems with the change."""
    problems: dict[str, Any] = {}
    for name in sorted(COMMON_REQUEST_FIELDS & item.update_fields.keys() - {"policy_start_date"}):
        problems[name] = ["The product of a booked quote cannot change."]
    product_fields = {
        key: value for key, value in item.update_fields.items() if key not in COMMON_REQUEST_FIELDS
    }
    fields = {**quote.fields, **product_fields}
    for name, messages in validate_fields(definition, fields).items():
        problems[name] = messages
    start = _start(quote, item.update_fields, now, problems)
    if problems:
        return None, problems
    # A renewed quote is priced for the period it is in, which ends when the quote does.
    periods = paid_periods(quote, package.renewals)
    renewed = len(periods) > 1
    try:
        end = (
            with_offset(quote.end_at, quote.end_offset)
            if renewed
            else policy_end(definition, fields, start)
        )
        rating = rate(
            definition,
            fields,
            currency=package.currency,
            customer_country=package.customer_country or "",
            start=with_offset(periods[-1].start, quote.start_offset) if renewed else start,
            end=end,
            fx=fx,
        )
    except RatingError as exc:
        return None, dict(exc.field_errors)
    if end <= now:
        name = definition.period.end_field or "policy_start_date"
        return None, {name: ["The cover would have ended already."]}
    changed = _detached(quote)
    changed.fields = fields
    changed.start_at, changed.start_offset = start, offset_minutes(start)
    changed.end_at, changed.end_offset = end, offset_minutes(end)
    if item.insured is not None:
        changed.insured = {"items": item.insured}
    apply_rating(changed, rating)
    changed.updated_at = now
    return changed, {}


def _stored(quote: Quote) -> dict[str, Any]:
    return {
        "fields": quote.fields,
        "insured": quote.insured,
        "start_at": quote.start_at.isoformat(),
        "start_offset": quote.start_offset,
        "end_at": quote.end_at.isoformat(),
        "end_offset": quote.end_offset,
        "price_minor": quote.price_minor,
        "premium_minor": quote.premium_minor,
        "tax_minor": quote.tax_minor,
        "commission_minor": quote.commission_minor,
        "cover_amount_minor": quote.cover_amount_minor,
        "breakdown": quote.breakdown,
    }


def _restore(quote: Quote, stored: dict[str, Any]) -> None:
    quote.fields = stored["fields"]
    quote.insured = stored["insured"]
    quote.start_at = datetime.fromisoformat(stored["start_at"])
    quote.start_offset = stored["start_offset"]
    quote.end_at = datetime.fromisoformat(stored["end_at"])
    quote.end_offset = stored["end_offset"]
    quote.price_minor = stored["price_minor"]
    quote.premium_minor = stored["premium_minor"]
    quote.tax_minor = stored["tax_minor"]
    quote.commission_minor = stored["commission_minor"]
    quote.cover_amount_minor = stored["cover_amount_minor"]
    quote.breakdown = stored["breakdown"]


def _no_longer_applicable(quote: Quote, stored: dict[str, Any], now: datetime) -> str | None:
    """Why a priced change of `quote` cannot apply at `now`, when time has moved past the
    rules it was priced under (the same as `_targets` and `_start` apply when pricing)."""
    if quote.end_at <= now:
        return f"the cover of quote {quote.id} has ended"
    start = datetime.fromisoformat(stored["start_at"])
    if start != quote.start_at:
        if quote.start_at <= now:
            return f"the cover of quote {quote.id} has started; its start date cannot change"
        if start < now - START_TOLERANCE:
            return f"the new start date of quote {quote.id} has passed"
    if datetime.fromisoformat(stored["end_at"]) <= now:
        return f"the cover of quote {quote.id} would have ended already"
    return None


async def quote_for_update(
    session: AsyncSession, catalog: Catalog, scope: Scope, booking_id: str, data: BookingUpdateIn
) -> PricedUpdate:
    package = await load_booking(session, scope, booking_id, lock=True)
    _require_changeable(package)
    holder = _holder_changes(data)
    if not data.quotes and not holder:
        raise ValidationFailed(errors={"quotes": ["Nothing to change."]})
    quotes = _targets(package, data, scope.now)
    definitions = await catalog.definitions({quote.product_version_id for quote in quotes})
    fx = await catalog.fx()
    schedules = await load_schedules(session, package.id) if quotes else {}
    errors: dict[str, Any] = {}
    changed: dict[str, Quote] = {}
    for index, (quote, item) in enumerate(zip(quotes, data.quotes, strict=True)):
        definition = definitions[quote.product_version_id]
        new, problems = _price_change(quote, item, definition, package, fx, scope.now)
        if new is None:
            errors[str(index)] = {"update_fields": problems}
        elif quote.id in schedules and new.price_minor != quote.price_minor:
            errors[str(index)] = {
                "update_fields": {
                    NON_FIELD_ERRORS: [
                        f"Quote {quote.id} is paid by instalments; its price cannot change."
                    ]
                }
            }
        else:
            changed[quote.id] = new
    if errors:
        raise ValidationFailed(errors={"quotes": errors})

    update = BookingUpdate(
        id=ids.update_id(),
        partner_id=scope.partner_id,
        mode=scope.mode,
        package_id=package.id,
        status=QUOTED,
        changes={
            "quotes": {quote_id: _stored(quote) for quote_id, quote in changed.items()},
            "policyholder": holder,
        },
        basis=fingerprint(package),
        created_at=scope.now,
        expires_at=scope.now + UPDATE_TTL,
        confirmed_at=None,
    )
    session.add(update)
    preview = _preview(package, changed, holder)
    preview.updated_at = scope.now
    diffs = _diffs(package, changed)
    return PricedUpdate(update, preview, diffs)


def _diffs(package: QuotePackage, changed: dict[str, Quote]) -> dict[str, Decimal]:
    diffs = {}
    for quote in booked_quotes(package):
        new = changed.get(quote.id)
        minor = 0 if new is None else new.price_minor - quote.price_minor
        diffs[quote.id] = from_minor(minor, package.currency)
    return diffs


async def confirm_update(
    session: AsyncSession,
    catalog: Catalog,
    scope: Scope,
    booking_id: str,
    update_id: str,
    render: Render,
) -> tuple[dict[str, Any], dict[str, Decimal]]:
    """Apply a priced update; the booking as committed and each quote's price change."""
    package = await load_booking(session, scope, booking_id, lock=True)
    update = await session.scalar(
        select(BookingUpdate).where(BookingUpdate.id == update_id).with_for_update()
    )
    if (
        update is None
        or update.partner_id != scope.partner_id
        or update.mode != scope.mode
        or update.package_id != package.id
    ):
        raise NotFound(f"Update {update_id} not found for booking {booking_id}.")
    if update.status == CONFIRMED:
        raise Conflict(f"Update {update_id} was confirmed already.")
    if update.expires_at <= scope.now:
        raise Conflict(
            f"Update {update_id} expired at {server_time(update.expires_at)}; "
            "quote the change again."
        )
    _require_changeable(package)
    if fingerprint(package) != update.basis:
        raise Conflict(
            f"Booking {booking_id} changed after update {update_id} was quoted; "
            "quote the change again."
        )
    stored_quotes: dict[str, Any] = update.changes.get("quotes", {})
    for quote in booked_quotes(package):
        stored = stored_quotes.get(quote.id)
        problem = None if stored is None else _no_longer_applicable(quote, stored, scope.now)
        if problem is not None:
            raise Conflict(f"Update {update_id}: {problem}; quote the change again.")
    before = {quote.id: quote.price_minor for quote in booked_quotes(package)}
    changed = [quote for quote in package.quotes if quote.id in stored_quotes]
    definitions = await catalog.definitions({quote.product_version_id for quote in changed})
    for quote in changed:
        _restore(quote, stored_quotes[quote.id])
        quote.updated_at = scope.now
        quote_changed(package, quote, definitions[quote.product_version_id], scope.now)
    holder = package.policyholder
    assert holder is not None  # every booking has one
    for name, value in update.changes.get("policyholder", {}).items():
        setattr(holder, name, value)
    package.updated_at = scope.now
    update.status = CONFIRMED
    update.confirmed_at = scope.now
    payload = await _emit(session, scope, package, EventType.BOOKING_UPDATED, render)
    diffs = {
        quote.id: from_minor(quote.price_minor - before[quote.id], package.currency)
        for quote in booked_quotes(package)
    }
    return payload, diffs
