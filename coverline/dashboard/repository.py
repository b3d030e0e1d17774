"""The queries behind the dashboard's pages: booking search, a booking's timeline, the
overview's daily figures and the health of webhook endpoints. Every query is scoped to one
partner and one mode."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.bookings.models import Cancellation
from coverline.catalog.models import Product, ProductVersion
from coverline.events.models import Event
from coverline.quotes.models import Policyholder, Quote, QuotePackage
from coverline.quotes.service import package_loads
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

BOOKING_STATUSES = ("CONFIRMED", "PENDING_PAYMENT", "CANCELLED")
SOLD_QUOTE_STATUSES = ("PENDING_PAYMENT", "CONFIRMED", "CANCELLED", "RENEWED")


def pretty_json(body: bytes | str | dict[str, Any] | list[Any]) -> str:
    document = json.loads(body) if isinstance(body, (bytes, str)) else body
    return json.dumps(document, indent=2, ensure_ascii=False)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


@dataclass(frozen=True)
class BookingFilters:
    query: str = ""
    status: str = ""
    product: str = ""
    date_from: date | None = None
    date_to: date | None = None


def _booking_conditions(
    partner_id: int, mode: str, filters: BookingFilters
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [
        QuotePackage.partner_id == partner_id,
        QuotePackage.mode == mode,
        QuotePackage.is_booking.is_(True),
    ]
    text = filters.query.strip()
    if text:
        pattern = _like(text)
        holder = Policyholder
        full_name = func.lower(holder.first_name + " " + holder.last_name)
        holder_matches = exists(
            select(holder.package_id).where(
                holder.package_id == QuotePackage.id,
                or_(
                    func.lower(holder.first_name).like(pattern, escape="\\"),
                    func.lower(holder.last_name).like(pattern, escape="\\"),
                    full_name.like(pattern, escape="\\"),
                    func.lower(holder.email).like(pattern, escape="\\"),
                ),
            )
        )
        where.append(
            or_(
                QuotePackage.id == text.upper(),
                func.lower(QuotePackage.partner_transaction_id).like(pattern, escape="\\"),
                holder_matches,
            )
        )
    if filters.status:
        where.append(QuotePackage.status == filters.status)
    if filters.product:
        where.append(
            exists(
                select(Quote.id)
                .join(ProductVersion, ProductVersion.id == Quote.product_version_id)
                .join(Product, Product.id == ProductVersion.product_id)
                .where(
                    Quote.package_id == QuotePackage.id,
                    Quote.status.in_(SOLD_QUOTE_STATUSES),
                    Product.policy_type == filters.product,
                )
            )
        )
    if filters.date_from is not None:
        where.append(QuotePackage.booked_at >= datetime.combine(filters.date_from, time(), UTC))
    if filters.date_to is not None and filters.date_to < date.max:  # 31 Dec 9999: no bound
        end = datetime.combine(filters.date_to + timedelta(days=1), time(), UTC)
        where.append(QuotePackage.booked_at < end)
    return where


async def search_bookings(
    session: AsyncSession,
    partner_id: int,
    mode: str,
    filters: BookingFilters,
    *,
    limit: int,
    offset: int,
) -> tuple[int, list[QuotePackage]]:
    where = _booking_conditions(partner_id, mode, filters)
    count = await session.scalar(select(func.count()).select_from(QuotePackage).where(*where))
    rows = await session.scalars(
        select(QuotePackage)
        .where(*where)
        .order_by(QuotePackage.booked_at.desc(), QuotePackage.id.desc())
        .limit(limit)
        .offset(offset)
        .options(*package_loads())
    )
    return int(count or 0), list(rows)


async def product_choices(session: AsyncSession) -> list[tuple[str, str]]:
    rows = await session.execute(
        select(Product.policy_type, Product.policy_name).order_by(Product.policy_name)
    )
    seen: dict[str, str] = {}
    for policy_type, name in rows.all():
        seen.setdefault(policy_type, name)
    return list(seen.items())


async def product_names(session: AsyncSession, version_ids: set[str]) -> dict[str, str]:
    if not version_ids:
        return {}
    rows = await session.execute(
        select(ProductVersion.id, Product.policy_name, ProductVersion.revision)
        .join(Product, Product.id == ProductVersion.product_id)
        .where(ProductVersion.id.in_(version_ids))
    )
    return {vid: f"{name} (revision {revision})" for vid, name, revision in rows.all()}


# ------------------------------------------------------------------------------ timeline


@dataclass(frozen=True)
class TimelineItem:
    kind: str  # event | delivery | message
    at: datetime
    title: str
    status: str | None = None
    detail: str | None = None
    url: str | None = None
    order: tuple[Any, ...] = field(default=(), compare=False)


async def booking_events(
    session: AsyncSession, partner_id: int, mode: str, booking_id: str, limit: int
) -> tuple[list[Event], int]:
    """The latest `limit` events of a booking, oldest first, and how many it has."""
    of_booking = (
        Event.partner_id == partner_id,
        Event.mode == mode,
        Event.resource_id == booking_id,
    )
    rows = await session.scalars(
        select(Event).where(*of_booking).order_by(Event.id.desc()).limit(limit)
    )
    total = await session.scalar(select(func.count()).select_from(Event).where(*of_booking))
    return list(reversed(list(rows))), total or 0


async def booking_deliveries(
    session: AsyncSession, partner_id: int, mode: str, event_ids: list[int], limit: int
) -> list[tuple[WebhookDelivery, WebhookEndpoint]]:
    """The latest `limit` webhook deliveries of these events, oldest first."""
    if not event_ids:
        return []
    rows = await session.execute(
        select(WebhookDelivery, WebhookEndpoint)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(
            WebhookDelivery.partner_id == partner_id,
            WebhookDelivery.mode == mode,
            WebhookDelivery.event_id.in_(event_ids),
        )
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return [(delivery, endpoint) for delivery, endpoint in reversed(rows.all())]


async def confirmed_cancellations(session: AsyncSession, package_id: str) -> list[Cancellation]:
    rows = await session.scalars(
        select(Cancellation)
        .where(Cancellation.package_id == package_id, Cancellation.status == "CONFIRMED")
        .order_by(Cancellation.created_at)
    )
    return list(rows)


# ------------------------------------------------------------------------------ overview


@dataclass
class DailyFigures:
    days: list[date]
    bookings: list[int]
    # Per currency, minor units per day.
    premium: dict[str, list[int]]
    refunds: dict[str, list[int]]

    def currencies(self) -> list[str]:
        totals: dict[str, int] = defaultdict(int)
        for currency, values in self.premium.items():
            totals[currency] += sum(values)
        for currency, values in self.refunds.items():
            totals[currency] += sum(values)
        return sorted(totals, key=lambda c: (-totals[c], c))


async def daily_figures(
    session: AsyncSession, partner_id: int, mode: str, today: date, days: int
) -> DailyFigures:
    first = today - timedelta(days=days - 1)
    start = datetime.combine(first, time(), UTC)
    end = datetime.combine(today + timedelta(days=1), time(), UTC)
    index = {first + timedelta(days=n): n for n in range(days)}
    bookings = [0] * days
    premium: dict[str, list[int]] = {}
    refunds: dict[str, list[int]] = {}

    sold = await session.execute(
        select(QuotePackage.id, QuotePackage.booked_at, QuotePackage.currency, Quote.price_minor)
        .join(Quote, Quote.package_id == QuotePackage.id)
        .where(
            QuotePackage.partner_id == partner_id,
            QuotePackage.mode == mode,
            QuotePackage.is_booking.is_(True),
            QuotePackage.booked_at >= start,
            QuotePackage.booked_at < end,
            Quote.status.in_(SOLD_QUOTE_STATUSES),
        )
    )
    counted: set[str] = set()
    for package_id, booked_at, currency, price_minor in sold.all():
        if booked_at is None:
            continue
        slot = index.get(booked_at.astimezone(UTC).date())
        if slot is None:
            continue
        if package_id not in counted:
            counted.add(package_id)
            bookings[slot] += 1
        premium.setdefault(currency, [0] * days)[slot] += int(price_minor)

    cancelled = await session.execute(
        select(Cancellation.confirmed_at, Cancellation.lines, QuotePackage.currency)
        .join(QuotePackage, QuotePackage.id == Cancellation.package_id)
        .where(
            Cancellation.partner_id == partner_id,
            Cancellation.mode == mode,
            Cancellation.status == "CONFIRMED",
            Cancellation.confirmed_at >= start,
            Cancellation.confirmed_at < end,
        )
    )
    for confirmed_at, lines, currency in cancelled.all():
        if confirmed_at is None:
            continue
        slot = index.get(confirmed_at.astimezone(UTC).date())
        if slot is None:
            continue
        amount = sum(int(line.get("refund_minor", 0)) for line in lines.get("quotes", []))
        refunds.setdefault(currency, [0] * days)[slot] += amount
    return DailyFigures(list(index), bookings, premium, refunds)


@dataclass
class EndpointHealth:
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    last_attempt_at: datetime | None = None
    last_status_code: int | None = None

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.pending

    @property
    def success_rate(self) -> int | None:
        finished = self.succeeded + self.failed
        return round(100 * self.succeeded / finished) if finished else None


async def endpoint_health(
    session: AsyncSession, endpoint_ids: list[int]
) -> dict[int, EndpointHealth]:
    """Deliveries of the last 24 hours (real time: deliveries are stamped by the real clock)."""
    if not endpoint_ids:
        return {}
    since = datetime.now(UTC) - timedelta(hours=24)
    health = {endpoint_id: EndpointHealth() for endpoint_id in endpoint_ids}
    rows = await session.execute(
        select(WebhookDelivery.endpoint_id, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.endpoint_id.in_(endpoint_ids), WebhookDelivery.created_at >= since)
        .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.status)
    )
    for endpoint_id, status, count in rows.all():
        item = health[endpoint_id]
        if status == "succeeded":
            item.succeeded += int(count)
        elif status == "failed":
            item.failed += int(count)
        else:
            item.pending += int(count)
    latest = (
        select(WebhookDelivery.endpoint_id, func.max(WebhookAttempt.id).label("attempt_id"))
        .join(WebhookAttempt, WebhookAttempt.delivery_id == WebhookDelivery.id)
        .where(WebhookDelivery.endpoint_id.in_(endpoint_ids))
        .group_by(WebhookDelivery.endpoint_id)
        .subquery()
    )
    attempts = await session.execute(
        select(latest.c.endpoint_id, WebhookAttempt.attempted_at, WebhookAttempt.status_code).join(
            WebhookAttempt, WebhookAttempt.id == latest.c.attempt_id
        )
    )
    for endpoint_id, attempted_at, status_code in attempts.all():
        health[endpoint_id].last_attempt_at = attempted_at
        health[endpoint_id].last_status_code = status_code
    return health
