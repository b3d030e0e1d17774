"""Bookings: book a quote package, instant booking, payment confirmation, direct changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.bookings.instalments import check_plans, create_schedules, settle_first
from coverline.catalog.service import Catalog
from coverline.db.inserts import insert_loaded
from coverline.events.service import EventType, record
from coverline.kit.errors import Conflict, NotFound, ValidationFailed
from coverline.quotes.models import Policyholder, QuotePackage
from coverline.quotes.schemas import BookingIn, BookingPatchIn, InstantBookingIn, PolicyholderIn
from coverline.quotes.service import (
    Errors,
    Scope,
    create_package,
    live_quotes,
    load_package,
    package_loads,
)
from coverline.renewals.service import schedule_first

# Renders a booking as it is on the wire; the events of a change carry that rendering.
Render = Callable[[QuotePackage], Awaitable[dict[str, Any]]]


def _policyholder(package_id: str, data: PolicyholderIn) -> Policyholder:
    values = data.model_dump()
    birth_date = values.pop("birth_date")
    allow_updates = values.pop("allow_updates")
    return Policyholder(
        package_id=package_id,
        birth_date=birth_date.isoformat() if birth_date else None,
        allow_updates=bool(allow_updates),
        **values,
    )


async def _emit(
    session: AsyncSession, scope: Scope, package: QuotePackage, kind: EventType, render: Render
) -> dict[str, Any]:
    payload = await render(package)
    await record(
        session,
        partner_id=scope.partner_id,
        mode=scope.mode,
        type=kind,
        resource_type="booking",
        resource_id=package.id,
        payload=payload,
        at=scope.now,
    )
    return payload


def _book(
    package: QuotePackage,
    scope: Scope,
    chosen: dict[str, list[dict[str, Any]] | None],
    policyholder: PolicyholderIn,
    require_payment_confirmation: bool,
) -> Policyholder:
    status = "PENDING_PAYMENT" if require_payment_confirmation else "CONFIRMED"
    for quote in live_quotes(package):
        if quote.id in chosen:
            quote.status = status
            insured = chosen[quote.id]
            if insured is not None:
                quote.insured = {"items": insured}
            if status == "CONFIRMED":
                quote.confirmed_at = scope.now
        else:
            quote.status = "OPTED_OUT"
        quote.updated_at = scope.now
    package.status = status
    package.is_booking = True
    package.booked_at = scope.now
    package.updated_at = scope.now
    holder = package.policyholder = _policyholder(package.id, policyholder)
    return holder


async def book(
    session: AsyncSession,
    catalog: Catalog,
    scope: Scope,
    package_id: str,
    data: BookingIn,
    render: Render,
) -> dict[str, Any]:
    package = await load_package(session, scope, package_id, lock=True)
    if package.is_booking:
        raise Conflict(f"Quote package {package_id} is booked already.")
    if package.status != "RECEIVED":
        raise Conflict(f"Quote package {package_id} is {package.status.lower()}.")
    quotes = {quote.id for quote in live_quotes(package)}
    errors = Errors()
    seen: set[str] = set()
    for item in data.quotes:
        if item.id not in quotes:
            errors.add("quotes", f"Quote {item.id} is not in this package.")
        elif item.id in seen:
            errors.add("quotes", f"Quote {item.id} is listed twice.")
        seen.add(item.id)
    errors.raise_if_any()
    plans = {item.id: item.instalment_plan for item in data.quotes if item.instalment_plan}
    await check_plans(catalog, package, plans)
    if data.partner_transaction_id is not None:
        package.partner_transaction_id = data.partner_transaction_id
    _book(
        package,
        scope,
        {item.id: item.insured for item in data.quotes},
        data.policyholder,
        data.require_payment_confirmation,
    )
    await create_schedules(session, catalog, package, plans, scope.now)
    await schedule_first(session, catalog, package, scope.now)
    return await _emit(session, scope, package, EventType.BOOKING_CREATED, render)


async def instant_booking(
    session: AsyncSession, catalog: Catalog, scope: Scope, data: InstantBookingIn, render: Render
) -> dict[str, Any]:
    if data.customer_country is None:
        data = data.model_copy(update={"customer_country": data.policyholder.country})
    result = await create_package(session, catalog, scope, data, announce=False)
    if result.errors:
        raise ValidationFailed("A requested product cannot be priced.", errors=result.errors)
    package = result.package
    chosen: dict[str, list[dict[str, Any]] | None] = {quote.id: None for quote in package.quotes}
    holder = _book(package, scope, chosen, data.policyholder, data.require_payment_confirmation)
    # The package is new: written now, in one statement per table, without the ORM's flush.
    await insert_loaded(session, [package, holder, *package.quotes])
    await schedule_first(session, catalog, package, scope.now)
    return await _emit(session, scope, package, EventType.BOOKING_CREATED, render)


async def load_booking(
    session: AsyncSession, scope: Scope, booking_id: str, *, lock: bool = False
) -> QuotePackage:
    try:
        package = await load_package(session, scope, booking_id, lock=lock)
    except NotFound:
        raise NotFound(f"Booking {booking_id} not found.") from None
    if not package.is_booking:
        raise NotFound(f"Booking {booking_id} not found.")
    return package


async def confirm_payment(
    session: AsyncSession, catalog: Catalog, scope: Scope, booking_id: str, render: Render
) -> dict[str, Any]:
    package = await load_booking(session, scope, booking_id, lock=True)
    if package.status != "PENDING_PAYMENT":
        raise Conflict(
            f"Booking {booking_id} is {package.status.lower()}; only a booking pending payment "
            "can be confirmed."
        )
    pending = [quote for quote in package.quotes if quote.status == "PENDING_PAYMENT"]
    if all(quote.end_at <= scope.now for quote in pending):
        raise Conflict(
            f"The cover of booking {booking_id} has ended; its payment can no longer be confirmed."
        )
    for quote in pending:
        quote.status = "CONFIRMED"
        quote.confirmed_at = scope.now
        quote.updated_at = scope.now
    package.status = "CONFIRMED"
    package.updated_at = scope.now
    await settle_first(session, package.id, scope.now)
    await schedule_first(session, catalog, package, scope.now)
    return await _emit(session, scope, package, EventType.BOOKING_PAYMENT_CONFIRMED, render)


async def modify(
    session: AsyncSession, scope: Scope, booking_id: str, data: BookingPatchIn, render: Render
) -> dict[str, Any]:
    package = await load_booking(session, scope, booking_id, lock=True)
    if package.status == "CANCELLED":
        raise Conflict(f"Booking {booking_id} is cancelled.")
    changes = data.model_dump(exclude_unset=True)
    holder_changes = changes.get("policyholder") or {}
    if not holder_changes and "partner_transaction_id" not in changes:
        raise ValidationFailed(errors={"policyholder": ["Nothing to change."]})
    holder = package.policyholder
    assert holder is not None
    for name, value in holder_changes.items():
        if name == "birth_date" and value is not None:
            value = value.isoformat()
        if name == "allow_updates":
            value = bool(value)
        setattr(holder, name, value)
    if "partner_transaction_id" in changes:
        package.partner_transaction_id = changes["partner_transaction_id"]
    package.updated_at = scope.now
    return await _emit(session, scope, package, EventType.BOOKING_UPDATED, render)


@dataclass(frozen=True)
class BookingPage:
    count: int
    bookings: list[QuotePackage]


async def list_bookings(
    session: AsyncSession, scope: Scope, *, limit: int, offset: int
) -> BookingPage:
    where = (
        QuotePackage.partner_id == scope.partner_id,
        QuotePackage.mode == scope.mode,
        QuotePackage.is_booking.is_(True),
    )
    count = await session.scalar(select(func.count()).select_from(QuotePackage).where(*where))
    rows = await session.scalars(
        select(QuotePackage)
        .where(*where)
        .order_by(QuotePackage.created_at.desc(), QuotePackage.id.desc())
        .limit(limit)
        .offset(offset)
        .options(*package_loads())
    )
    return BookingPage(int(count or 0), list(rows))
