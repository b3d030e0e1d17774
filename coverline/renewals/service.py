"""Renewals of renewable policies: the clock's transitions (notification, due, expiry),
the renewal quote, payment and opt-out (API-CONTRACT §7)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from dateutil.relativedelta import relativedelta
from sqlalchemy import Table, bindparam, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.catalog.definition import ProductDefinition, parse_duration
from coverline.catalog.rating import LATEST_END, RatingError, rate
from coverline.catalog.service import Catalog
from coverline.events.service import EventType, record
from coverline.kit import ids
from coverline.kit.dates import server_time, with_offset
from coverline.kit.errors import Conflict, NotFound, ValidationFailed
from coverline.kit.money import format_money, from_minor, json_number
from coverline.quotes.models import Quote, QuotePackage
from coverline.quotes.service import Scope, apply_rating, load_package
from coverline.renewals.models import Renewal

Render = Callable[[QuotePackage], Awaitable[dict[str, Any]]]
OPEN = ("ACTIVE", "DUE")
# How far a month-end period can move from one counted from its start (31 Jan → 28 Feb).
MONTH_END_DRIFT = timedelta(days=3)


def _rfc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC)  # a renewal made in this request has the partner's offset
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment.microsecond == 0 else server_time(moment)


def renewal_json(renewal: Renewal) -> dict[str, Any]:
    """The renewal as XCover's RENEWAL_* webhooks show it."""
    return {
        "id": renewal.id,
        "package_id": renewal.package_id,
        "quote_id": renewal.quote_id,
        "status": renewal.status,
        "start_date": _rfc(renewal.start_date),
        "notification_date": _rfc(renewal.notification_date),
        "due_date": _rfc(renewal.due_date),
        "expiry_date": _rfc(renewal.expiry_date),
        "cancelled_on": _rfc(renewal.cancelled_on),
        "paid_on": _rfc(renewal.paid_on),
        "created_at": server_time(renewal.created_at),
    }


def upcoming(renewals: Sequence[Renewal], quote_id: str) -> Renewal | None:
    """The renewal a quote is waiting for: not paid, not cancelled, not lapsed."""
    for renewal in sorted(renewals, key=lambda r: r.sequence, reverse=True):
        if renewal.quote_id == quote_id and renewal.paid_on is None and renewal.status in OPEN:
            return renewal
    return None


def _period(definition: ProductDefinition) -> relativedelta:
    assert definition.renewal is not None
    return parse_duration(definition.renewal.period)


def renews_past_the_calendar(definition: ProductDefinition, due: datetime) -> bool:
    """Whether a period starting at `due` would end in year 9000 or later, where no cover
    ends (`LATEST_END`): the cover is not renewed again and ends when it is due."""
    try:
        return due + _period(definition) >= LATEST_END
    except (OverflowError, ValueError):  # past year 9999
        return True


def new_renewal(
    package: QuotePackage,
    quote: Quote,
    definition: ProductDefinition,
    sequence: int,
    due: datetime,
    now: datetime,
) -> Renewal:
    """The renewal into period `sequence`, falling due when the current period ends."""
    renewal = Renewal(
        id=ids.renewal_id(),
        partner_id=package.partner_id,
        mode=package.mode,
        package_id=quote.package_id,
        quote_id=quote.id,
        sequence=sequence,
        status="ACTIVE",
        created_at=now,
        updated_at=now,
    )
    _fall_due(renewal, definition, due)
    return renewal


def _fall_due(renewal: Renewal, definition: ProductDefinition, due: datetime) -> None:
    """The renewal's dates when the period before it ends at `due`; its clock from the start."""
    assert definition.renewal is not None
    renewal.start_date = renewal.due_date = due
    renewal.notification_date = due - timedelta(days=definition.renewal.notification_days)
    renewal.expiry_date = due + timedelta(days=definition.renewal.grace_days)
    renewal.stage, renewal.next_transition_at = "notify", renewal.notification_date


def period_end(quote: Quote, renewal: Renewal, definition: ProductDefinition) -> datetime:
    """The end of the period `renewal` pays for: counted from the quote's first start, so
    that month ends never drift (31 Jan → 28 Feb → 31 Mar), unless the product's period has
    changed since (then from the renewal's start)."""
    # Calendar arithmetic in the offset the partner sent, as the first period was counted.
    period = _period(definition)
    following = with_offset(renewal.start_date, quote.end_offset) + period
    anchored = with_offset(quote.start_at, quote.start_offset) + period * renewal.sequence
    end = anchored if abs(anchored - following) <= MONTH_END_DRIFT else following
    return end.astimezone(UTC)


@dataclass(frozen=True)
class PaidPeriod:
    start: datetime
    end: datetime
    price_minor: int


def paid_periods(quote: Quote, renewals: Sequence[Renewal]) -> list[PaidPeriod]:
    """The periods of cover a quote's customer has paid for, in order: the first from the
    quote's start, then one for each paid renewal, the last ending when the quote ends. Each
    has the price it was paid at; the last the quote's, with any modification since."""
    paid = sorted(
        (r for r in renewals if r.quote_id == quote.id and r.paid_on is not None),
        key=lambda r: r.sequence,
    )
    starts = [quote.start_at, *(r.start_date for r in paid)]
    ends = [*(r.start_date for r in paid), quote.end_at]
    prices = [
        *(
            quote.price_minor if r.previous_price_minor is None else r.previous_price_minor
            for r in paid
        ),
        quote.price_minor,
    ]
    periods = [PaidPeriod(*period) for period in zip(starts, ends, prices, strict=True)]
    return [period for period in periods[:-1] if period.end > period.start] + periods[-1:]


def quote_changed(
    package: QuotePackage, quote: Quote, definition: ProductDefinition, now: datetime
) -> None:
    """After a modification of `quote`: a price quoted for its next period was worked out with
    the fields before, and is forgotten (the renewal is quoted again before it is paid); and
    the renewal falls due when the quote now ends."""
    for renewal in package.renewals:
        if (
            renewal.quote_id != quote.id
            or renewal.paid_on is not None
            or renewal.status not in OPEN
        ):
            continue
        renewal.quoted_version_id = renewal.quoted_price_minor = None
        renewal.quoted_premium_minor = renewal.quoted_tax_minor = None
        renewal.quoted_commission_minor = renewal.quoted_breakdown = renewal.quoted_at = None
        if renewal.start_date != quote.end_at and definition.renewal is not None:
            _fall_due(renewal, definition, quote.end_at)
            renewal.status = "ACTIVE"
        renewal.updated_at = now


async def schedule_first(
    session: AsyncSession, catalog: Catalog, package: QuotePackage, now: datetime
) -> None:
    """When a booking is confirmed, every renewable quote gets its first renewal."""
    definitions = await catalog.definitions({q.product_version_id for q in package.quotes})
    for quote in package.quotes:
        definition = definitions[quote.product_version_id]
        if quote.status != "CONFIRMED" or definition.renewal is None:
            continue
        if any(r.quote_id == quote.id for r in package.renewals):
            continue
        if renews_past_the_calendar(definition, quote.end_at):
            continue
        renewal = new_renewal(package, quote, definition, 2, quote.end_at, now)
        package.renewals.append(renewal)
        session.add(renewal)


# ---------------------------------------------------------------------------- the clock


@dataclass(frozen=True)
class Transition:
    type: EventType
    renewal_id: str
    package_id: str
    at: datetime


# The clock's steps: from a stage, the event, the new status (None: unchanged), the next
# stage and the date column at which it falls.
STEPS: dict[str, tuple[EventType, str | None, str | None, str | None]] = {
    "notify": (EventType.RENEWAL_NOTIFICATION, None, "due", "due_date"),
    "due": (EventType.RENEWAL_DUE, "DUE", "expire", "expiry_date"),
    "expire": (EventType.RENEWAL_EXPIRED, "UNPAID", None, None),
}


async def run_due(
    session: AsyncSession,
    *,
    until: datetime,
    partner_id: int | None = None,
    skip_sandbox_of: Sequence[int] = (),
    limit: int = 500,
    lock: bool = True,
) -> list[Transition]:
    """Apply up to `limit` transitions due by `until`, oldest first, each exactly once.

    `partner_id` limits the run to that partner's sandbox (its test clock); otherwise
    sandboxes with a test clock of their own (`skip_sandbox_of`) are left to theirs.
    The caller's transaction holds the row locks (SKIP LOCKED on PostgreSQL), so any number
    of schedulers can run side by side; the update is also conditional on the stage it read.
    """
    query = select(Renewal).where(Renewal.next_transition_at <= until)
    if partner_id is not None:
        query = query.where(Renewal.partner_id == partner_id, Renewal.mode == "sandbox")
    elif skip_sandbox_of:
        query = query.where(
            or_(
                Renewal.mode == "live",
                not_(Renewal.partner_id.in_(skip_sandbox_of)),
            )
        )
    query = query.order_by(Renewal.next_transition_at, Renewal.id).limit(limit)
    if lock:
        query = query.with_for_update(skip_locked=True)
    renewals = list(await session.scalars(query))
    changes: list[dict[str, Any]] = []
    transitions = []
    for renewal in renewals:
        step = STEPS.get(renewal.stage or "")
        at = renewal.next_transition_at
        if step is None or at is None:
            continue
        kind, status, stage, column = step
        changes.append(
            {
                "b_id": renewal.id,
                "b_from": renewal.stage,
                "b_status": status or renewal.status,
                "b_stage": stage,
                "b_next": getattr(renewal, column) if column else None,
                "b_at": at,
            }
        )
        transitions.append(Transition(kind, renewal.id, renewal.package_id, at))
    if not changes:
        return []
    # One statement for the whole batch; the ORM copies are not used again.
    for renewal in renewals:
        session.expunge(renewal)
    table = cast(Table, Renewal.__table__)
    connection = await session.connection()
    await connection.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.stage == bindparam("b_from"))
        .values(
            status=bindparam("b_status"),
            stage=bindparam("b_stage"),
            next_transition_at=bindparam("b_next"),
            updated_at=bindparam("b_at"),
        ),
        changes,
    )
    by_id = {renewal.id: renewal for renewal in renewals}
    for change, transition in zip(changes, transitions, strict=True):
        renewal = by_id[transition.renewal_id]
        renewal.status = change["b_status"]
        renewal.stage = change["b_stage"]
        renewal.next_transition_at = change["b_next"]
        await record(
            session,
            partner_id=renewal.partner_id,
            mode=renewal.mode,
            type=transition.type,
            resource_type="booking",
            resource_id=renewal.package_id,
            payload={"renewal": renewal_json(renewal)},
            at=transition.at,
        )
    return transitions


# ---------------------------------------------------------------------------- the partner API


async def _booking_with_renewal(
    session: AsyncSession, scope: Scope, package_id: str
) -> tuple[QuotePackage, Renewal]:
    package = await load_package(session, scope, package_id, lock=True)
    if not package.is_booking:
        raise NotFound(f"Booking {package_id} not found.")
    candidates = [r for r in package.renewals if r.paid_on is None]
    if not candidates:
        raise ValidationFailed(
            errors={"renewal": [f"Booking {package_id} has no renewable policy."]}
        )
    # A booking with several renewable quotes renews them one call at a time, the one falling
    # due first first; with none still open, the latest says why.
    renewable = [r for r in candidates if r.status in OPEN and scope.now < r.expiry_date]
    if renewable:
        return package, min(renewable, key=lambda r: (r.due_date, r.sequence, r.id))
    return package, max(candidates, key=lambda r: (r.sequence, r.created_at))


def _require_open(renewal: Renewal, now: datetime) -> None:
    # Past its expiry a renewal is closed, whether or not the scheduler has marked it yet.
    if renewal.status == "UNPAID" or (renewal.status != "CANCELLED" and now >= renewal.expiry_date):
        raise Conflict(
            f"Renewal {renewal.id} expired on {_rfc(renewal.expiry_date)} and can no longer "
            "be renewed."
        )
    if renewal.status == "CANCELLED":
        raise Conflict(
            f"Renewal {renewal.id} is cancelled: it was opted out of, or its quote cancelled."
        )


async def quote_for_renewal(
    session: AsyncSession, catalog: Catalog, scope: Scope, package_id: str, render: Render
) -> dict[str, Any]:
    """Price the next period with the product's current version; nothing is paid yet."""
    package, renewal = await _booking_with_renewal(session, scope, package_id)
    _require_open(renewal, scope.now)
    quote = next(q for q in package.quotes if q.id == renewal.quote_id)
    definitions = await catalog.definitions({quote.product_version_id})
    old = definitions[quote.product_version_id]
    current = await catalog.current(old.policy_type, old.policy_type_version)
    version_id, definition = (
        (current.version_id, current.definition) if current else (quote.product_version_id, old)
    )
    if definition.renewal is None:
        raise ValidationFailed(
            errors={"renewal": ["The current version of this product is not renewable."]}
        )
    start = renewal.start_date
    end = period_end(quote, renewal, definition)
    try:
        rating = rate(
            definition,
            quote.fields,
            currency=package.currency,
            customer_country=package.customer_country or "",
            start=with_offset(start, quote.start_offset),
            end=with_offset(end, quote.end_offset),
            fx=await catalog.fx(),
        )
    except RatingError as exc:
        raise ValidationFailed("The renewal cannot be priced.", errors=exc.field_errors) from None
    priced = Quote(breakdown={})
    apply_rating(priced, rating)
    renewal.quoted_version_id = version_id
    renewal.quoted_price_minor = priced.price_minor
    renewal.quoted_premium_minor = priced.premium_minor
    renewal.quoted_tax_minor = priced.tax_minor
    renewal.quoted_commission_minor = priced.commission_minor
    renewal.quoted_breakdown = priced.breakdown
    renewal.quoted_at = scope.now
    renewal.updated_at = scope.now
    booking = await render(package)
    return _renewal_response(booking, renewal, quote, end)


def _renewal_response(
    booking: dict[str, Any], renewal: Renewal, quote: Quote, end: datetime
) -> dict[str, Any]:
    assert renewal.quoted_price_minor is not None
    currency = booking["currency"]
    price = from_minor(renewal.quoted_price_minor, currency)
    return {
        **booking,
        "renewal_id": renewal.id,
        "renewal": {
            **renewal_json(renewal),
            "price": json_number(price),
            "price_formatted": format_money(price, currency),
            "policy_start_date": with_offset(renewal.start_date, quote.start_offset).isoformat(),
            "policy_end_date": with_offset(end, quote.end_offset).isoformat(),
            "policy_version": renewal.quoted_version_id,
        },
    }


async def confirm(
    session: AsyncSession,
    catalog: Catalog,
    scope: Scope,
    package_id: str,
    renewal_id: str,
    render: Render,
) -> dict[str, Any]:
    """Pay a quoted renewal: the quote gets its next period at the quoted price."""
    package = await load_package(session, scope, package_id, lock=True)
    renewal = next((r for r in package.renewals if r.id == renewal_id), None)
    if not package.is_booking or renewal is None:
        raise NotFound(f"Renewal {renewal_id} not found.")
    if renewal.paid_on is not None:
        raise Conflict(f"Renewal {renewal_id} is paid already.")
    _require_open(renewal, scope.now)
    if renewal.quoted_price_minor is None or renewal.quoted_version_id is None:
        raise ValidationFailed(
            errors={"renewal": ["Quote the renewal (quote_for_renewal) before confirming it."]}
        )
    quote = next(q for q in package.quotes if q.id == renewal.quote_id)
    definition = (await catalog.definitions({renewal.quoted_version_id}))[renewal.quoted_version_id]
    renewal.previous_price_minor = quote.price_minor
    quote.end_at = period_end(quote, renewal, definition)
    quote.product_version_id = renewal.quoted_version_id
    quote.price_minor = renewal.quoted_price_minor
    quote.premium_minor = renewal.quoted_premium_minor or 0
    quote.tax_minor = renewal.quoted_tax_minor or 0
    quote.commission_minor = renewal.quoted_commission_minor or 0
    quote.breakdown = renewal.quoted_breakdown or {}
    quote.total_renewed_times += 1
    quote.updated_at = scope.now
    renewal.status = "ACTIVE"
    renewal.paid_on = scope.now
    renewal.stage, renewal.next_transition_at = None, None
    renewal.updated_at = scope.now
    if not renews_past_the_calendar(definition, quote.end_at):
        following = new_renewal(
            package, quote, definition, renewal.sequence + 1, quote.end_at, scope.now
        )
        package.renewals.append(following)
        session.add(following)
    package.updated_at = scope.now
    booking = await render(package)
    paid = renewal_json(renewal)
    await record(
        session,
        partner_id=package.partner_id,
        mode=package.mode,
        type=EventType.RENEWAL_CREATED,
        resource_type="booking",
        resource_id=package.id,
        payload={
            "renewal": paid,
            "booking": booking,
            "amount": json_number(from_minor(renewal.quoted_price_minor, package.currency)),
        },
        at=scope.now,
    )
    return {**booking, "renewal_id": renewal.id, "renewal": paid}


async def opt_out(
    session: AsyncSession, scope: Scope, package_id: str, render: Render
) -> dict[str, Any]:
    """Stop renewing: open renewals are cancelled; the current period runs to its end."""
    package = await load_package(session, scope, package_id, lock=True)
    if not package.is_booking:
        raise NotFound(f"Booking {package_id} not found.")
    open_renewals = [r for r in package.renewals if r.paid_on is None and r.status in OPEN]
    if not open_renewals:
        raise Conflict(f"Booking {package_id} has no renewal to opt out of.")
    for renewal in open_renewals:
        renewal.status = "CANCELLED"
        renewal.cancelled_on = scope.now
        renewal.stage, renewal.next_transition_at = None, None
        renewal.updated_at = scope.now
    package.updated_at = scope.now
    booking = await render(package)
    await record(
        session,
        partner_id=package.partner_id,
        mode=package.mode,
        type=EventType.BOOKING_UPDATED,
        resource_type="booking",
        resource_id=package.id,
        payload=booking,
        at=scope.now,
    )
    return booking
