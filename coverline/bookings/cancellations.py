"""Cancellations (API-CONTRACT §6): preview, cancel at once, confirm a preview.

A cancellation covers some or all quotes of a booking. Each cancelled quote's refund follows
`coverline.bookings.refunds` with the cancellation terms of the product version it was sold
with. A preview stores the refunds it shows and changes nothing else; confirming it within
24 hours applies exactly those refunds, cancelled as of the preview, unless the booking has
changed since. A booking is CANCELLED once none of its quotes is still in cover; a partial
cancellation leaves it CONFIRMED. Every cancellation, partial or whole, sends
BOOKING_CANCELLED, whose cancelled quotes carry their `refund_value`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.bookings.instalments import cancel_unpaid, load_schedules, paid_minor, rfc3339
from coverline.bookings.models import Cancellation
from coverline.bookings.modifications import fingerprint
from coverline.bookings.refunds import CancellationTerms, Period, refund_for
from coverline.bookings.service import Render, _emit, load_booking
from coverline.catalog.service import Catalog
from coverline.events.service import EventType
from coverline.kit import ids
from coverline.kit.dates import server_time, with_offset
from coverline.kit.errors import Conflict, NotFound, ValidationFailed
from coverline.kit.money import format_money, from_minor, json_number, to_minor
from coverline.quotes.models import Quote, QuotePackage
from coverline.quotes.presenter import booked_quotes
from coverline.quotes.schemas import QuoteRef
from coverline.quotes.service import Scope
from coverline.renewals.service import paid_periods

PREVIEW_TTL = timedelta(hours=24)
PREVIEW = "PREVIEW"
CONFIRMED = "CONFIRMED"
# Renewals still to come for a quote (not paid, not cancelled, not lapsed).
OPEN_RENEWALS = frozenset({"ACTIVE", "DUE"})


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preview: bool = Field(default=False, description="Show the refunds; cancel nothing.")
    quotes: list[QuoteRef] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="The quotes to cancel; all of them when absent.",
    )


@dataclass
class CancellationOutcome:
    package: QuotePackage
    cancellation: Cancellation
    # The booking as committed, for a cancellation that took place (not for a preview).
    booking: dict[str, Any] | None


def can_be_cancelled(quote: Quote, now: datetime) -> bool:
    return quote.status == "CONFIRMED" and quote.end_at > now


def _open(package: QuotePackage) -> None:
    if package.status == "CANCELLED":
        raise Conflict(f"Booking {package.id} is cancelled already.")
    if package.status == "PENDING_PAYMENT":
        raise Conflict(f"Booking {package.id} is pending payment; there is nothing to cancel yet.")


def _targets(package: QuotePackage, refs: Sequence[QuoteRef] | None, now: datetime) -> list[Quote]:
    booked = booked_quotes(package)
    if refs is None:
        targets = [quote for quote in booked if can_be_cancelled(quote, now)]
        if not targets:
            raise Conflict(f"Booking {package.id} has no quote in cover left to cancel.")
        return targets
    by_id = {quote.id: quote for quote in booked}
    errors: dict[str, Any] = {}
    seen: set[str] = set()
    for index, ref in enumerate(refs):
        if ref.id not in by_id:
            errors[str(index)] = {"id": [f"Quote {ref.id} is not in booking {package.id}."]}
        elif ref.id in seen:
            errors[str(index)] = {"id": [f"Quote {ref.id} is listed twice."]}
        seen.add(ref.id)
    if errors:
        raise ValidationFailed(errors={"quotes": errors})
    targets = [by_id[ref.id] for ref in refs]
    for quote in targets:
        if quote.status == "CANCELLED":
            raise Conflict(f"Quote {quote.id} is cancelled already.")
        if not can_be_cancelled(quote, now):
            reason = "its cover has ended" if quote.status == "CONFIRMED" else quote.status.lower()
            raise Conflict(f"Quote {quote.id} cannot be cancelled: {reason}.")
    return targets


async def _refunds(
    session: AsyncSession,
    catalog: Catalog,
    package: QuotePackage,
    targets: Sequence[Quote],
    at: datetime,
) -> list[dict[str, Any]]:
    currency = package.currency
    definitions = await catalog.definitions({quote.product_version_id for quote in targets})
    fx = await catalog.fx()
    schedules = await load_schedules(session, package.id)
    lines = []
    for quote in targets:
        definition = definitions[quote.product_version_id]
        terms = CancellationTerms.of(
            definition.cancellation, currency, definition.base_currency, fx
        )
        periods = []
        for period in paid_periods(quote, package.renewals):
            price = from_minor(period.price_minor, currency)
            periods.append(Period(period.start, period.end, price=price, paid=price))
        schedule = schedules.get(quote.id)
        if schedule is not None:  # instalments pay the first period
            periods[0] = replace(periods[0], paid=from_minor(paid_minor(schedule), currency))
        paid = sum(to_minor(period.paid, currency) for period in periods)
        confirmed_at = quote.confirmed_at or package.booked_at or quote.created_at
        refund = refund_for(
            periods=periods, currency=currency, confirmed_at=confirmed_at, at=at, terms=terms
        )
        until = refund.cooling_off_until
        lines.append(
            {
                "quote_id": quote.id,
                "paid_minor": paid,
                "refund_minor": to_minor(refund.refund, currency),
                "adjustment_fee_minor": to_minor(refund.adjustment_fee, currency),
                "cooling_off_until": until.isoformat() if until is not None else None,
            }
        )
    return lines


def _status_after(package: QuotePackage, cancelled: set[str], now: datetime) -> str:
    """CANCELLED once no quote is left in cover; otherwise the status it has."""
    for quote in booked_quotes(package):
        if quote.id not in cancelled and can_be_cancelled(quote, now):
            return package.status
    return "CANCELLED"


def _lines(cancellation: Cancellation) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = cancellation.lines.get("quotes", [])
    return lines


def _with_refunds(render: Render, cancellation: Cancellation) -> Render:
    """The booking as rendered, its cancelled quotes carrying `refund_value`."""
    refunds = {line["quote_id"]: line["refund_minor"] for line in _lines(cancellation)}

    async def rendered(package: QuotePackage) -> dict[str, Any]:
        booking = await render(package)
        for quote in booking["quotes"]:
            if quote["id"] in refunds:
                refund = from_minor(refunds[quote["id"]], package.currency)
                quote["refund_value"] = json_number(refund)
        return booking

    return rendered


async def _apply(
    session: AsyncSession,
    scope: Scope,
    package: QuotePackage,
    cancellation: Cancellation,
    render: Render,
) -> dict[str, Any]:
    cancelled = {line["quote_id"] for line in _lines(cancellation)}
    at = cancellation.effective_at
    status = _status_after(package, cancelled, scope.now)
    for quote in package.quotes:
        if quote.id in cancelled:
            quote.status = "CANCELLED"
            quote.cancelled_at = at
            quote.updated_at = scope.now
    schedules = await load_schedules(session, package.id, lock=True)
    for quote_id in cancelled:
        cancel_unpaid(schedules.get(quote_id, []), scope.now)
    for renewal in package.renewals:
        if (
            renewal.quote_id in cancelled
            and renewal.paid_on is None
            and renewal.status in OPEN_RENEWALS
        ):
            renewal.status = "CANCELLED"
            renewal.cancelled_on = scope.now
            renewal.stage, renewal.next_transition_at = None, None
            renewal.updated_at = scope.now
    package.status = status
    package.updated_at = scope.now
    cancellation.status = CONFIRMED
    cancellation.confirmed_at = scope.now
    return await _emit(
        session, scope, package, EventType.BOOKING_CANCELLED, _with_refunds(render, cancellation)
    )


async def cancel(
    session: AsyncSession,
    catalog: Catalog,
    scope: Scope,
    booking_id: str,
    data: CancelIn,
    render: Render,
) -> CancellationOutcome:
    """Preview (`preview: true`) or cancel at once some or all quotes of a booking."""
    package = await load_booking(session, scope, booking_id, lock=True)
    _open(package)
    targets = _targets(package, data.quotes, scope.now)
    lines = await _refunds(session, catalog, package, targets, scope.now)
    cancellation = Cancellation(
        id=ids.cancellation_id(),
        partner_id=scope.partner_id,
        mode=scope.mode,
        package_id=package.id,
        status=PREVIEW,
        lines={"quotes": lines},
        basis=fingerprint(package),
        effective_at=scope.now,
        confirm_before=scope.now + PREVIEW_TTL if data.preview else None,
        created_at=scope.now,
        confirmed_at=None,
    )
    session.add(cancellation)
    if data.preview:
        return CancellationOutcome(package, cancellation, None)
    booking = await _apply(session, scope, package, cancellation, render)
    return CancellationOutcome(package, cancellation, booking)


async def confirm(
    session: AsyncSession, scope: Scope, booking_id: str, cancellation_id: str, render: Render
) -> CancellationOutcome:
    """Carry out a previewed cancellation, with the refunds the preview showed."""
    package = await load_booking(session, scope, booking_id, lock=True)
    cancellation = await session.scalar(
        select(Cancellation).where(Cancellation.id == cancellation_id).with_for_update()
    )
    if (
        cancellation is None
        or cancellation.partner_id != scope.partner_id
        or cancellation.mode != scope.mode
        or cancellation.package_id != package.id
    ):
        raise NotFound(f"Cancellation {cancellation_id} not found for booking {booking_id}.")
    if cancellation.status == CONFIRMED:
        raise Conflict(f"Cancellation {cancellation_id} was confirmed already.")
    assert cancellation.confirm_before is not None  # every preview has a deadline
    if cancellation.confirm_before <= scope.now:
        raise Conflict(
            f"Cancellation {cancellation_id} expired at "
            f"{server_time(cancellation.confirm_before)}; preview the cancellation again."
        )
    _open(package)
    if fingerprint(package) != cancellation.basis:
        raise Conflict(
            f"Booking {booking_id} changed after cancellation {cancellation_id} was previewed; "
            "preview the cancellation again."
        )
    booking = await _apply(session, scope, package, cancellation, render)
    return CancellationOutcome(package, cancellation, booking)


def cancellation_json(outcome: CancellationOutcome, booking: dict[str, Any]) -> dict[str, Any]:
    """The answer to a cancellation, in the shape XCover records for `cancel` and
    `confirm_cancellation`; `booking` is the booking as rendered."""
    package, cancellation = outcome.package, outcome.cancellation
    currency = package.currency
    previewing = cancellation.status == PREVIEW
    lines = {line["quote_id"]: line for line in _lines(cancellation)}
    rendered = {quote["id"]: quote for quote in booking["quotes"]}
    cancelled_at = None if previewing else server_time(cancellation.effective_at)

    def money(name: str, minor: int) -> dict[str, Any]:
        amount = from_minor(minor, currency)
        return {name: json_number(amount), f"{name}_formatted": format_money(amount, currency)}

    quotes = []
    for quote in booked_quotes(package):
        line = lines.get(quote.id)
        if line is None:
            continue
        shown = rendered[quote.id]
        until = line["cooling_off_until"]
        quotes.append(
            {
                "id": quote.id,
                "policy_start_date": rfc3339(with_offset(quote.start_at, quote.start_offset)),
                "policy_end_date": rfc3339(with_offset(quote.end_at, quote.end_offset)),
                "policy_cancellation_date": cancelled_at,
                "policy_coolingoff_date": (
                    server_time(datetime.fromisoformat(until)) if until else None
                ),
                "status": "CANCELLED",
                "price": json_number(from_minor(quote.price_minor, currency)),
                "refund_value": json_number(from_minor(line["refund_minor"], currency)),
                "adjustment_fee": json_number(from_minor(line["adjustment_fee_minor"], currency)),
                "policy": shown["policy"],
                "insured": shown["insured"],
                "created_at": shown["created_at"],
                "confirmed_at": shown["confirmed_at"],
                "updated_at": shown["updated_at"],
                "cancelled_at": cancelled_at,
                "commission": None,
            }
        )
    remaining = [
        quote
        for quote in booked_quotes(package)
        if quote.status != "CANCELLED" and quote.id not in lines
    ]
    total_refund = sum((line["refund_minor"] for line in lines.values()), 0)
    status = (
        _status_after(package, set(lines), cancellation.effective_at)
        if previewing
        else (package.status)
    )
    deadline = cancellation.confirm_before
    return {
        "id": package.id,
        "status": status,
        "quotes": quotes,
        "policyholder": booking["policyholder"],
        "pds_url": booking["pds_url"],
        "coi": booking["coi"],
        "created_at": booking["created_at"],
        "updated_at": booking["updated_at"],
        **money("total_price", sum(q.price_minor for q in remaining)),
        **money("total_refund", total_refund),
        **money("total_tax", sum(q.tax_minor for q in remaining)),
        **money("total_premium", sum(q.premium_minor for q in remaining)),
        "currency": currency,
        "cancellation_id": cancellation.id if previewing else None,
        "confirm_before": server_time(deadline) if previewing and deadline else None,
    }
