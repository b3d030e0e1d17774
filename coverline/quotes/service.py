"""Quote packages: create, read, update, add, delete, opt out.

Services take an open session (the request owns the transaction), never commit, and write
an outbox event for every state change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from coverline.catalog.rating import FxTable, Rating, RatingError, policy_end, rate, validate_fields
from coverline.catalog.service import Catalog, ResolvedProduct
from coverline.db.inserts import insert_loaded
from coverline.events.service import EventType, record
from coverline.kit import ids
from coverline.kit.dates import offset_minutes, parse_rfc3339, with_offset
from coverline.kit.errors import Conflict, NotFound, ValidationFailed
from coverline.kit.money import to_minor
from coverline.kit.validation import (
    country_error,
    currency_error,
    is_country,
    is_currency,
    is_language,
)
from coverline.quotes.models import Quote, QuotePackage
from coverline.quotes.schemas import (
    AddQuotesIn,
    DeleteQuotesIn,
    QuoteItemIn,
    QuotePackageIn,
    QuotePackageUpdateIn,
)
from coverline.renewals.models import Renewal

# A start date a little behind the server clock is the partner's clock, not the past.
START_TOLERANCE = timedelta(minutes=5)


def package_loads() -> tuple[Any, ...]:
    """What every read of a package loads with it (relationships never load lazily)."""
    return (
        selectinload(QuotePackage.quotes),
        selectinload(QuotePackage.policyholder),
        selectinload(QuotePackage.renewals),
    )


LIVE_QUOTE_STATUSES = frozenset({"RECEIVED", "PENDING_PAYMENT", "CONFIRMED", "RENEWED"})


@dataclass(frozen=True)
class Scope:
    """Whose data a call may touch, and what time it is for them."""

    partner_id: int
    mode: str
    now: datetime


@dataclass
class Errors:
    """Field errors in XCover's flat shape; the first message for a field wins its slot."""

    fields: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        existing = self.fields.setdefault(name, [])
        if isinstance(existing, list) and message not in existing:
            existing.append(message)

    def merge(self, errors: dict[str, Any]) -> None:
        for name, value in errors.items():
            if isinstance(value, str):
                self.fields.setdefault(name, value)
            else:
                for message in value:
                    self.add(name, message)

    def raise_if_any(self) -> None:
        if self.fields:
            raise ValidationFailed(errors=self.fields)


@dataclass(frozen=True)
class PreparedItem:
    product: ResolvedProduct
    fields: dict[str, Any]
    start: datetime
    end: datetime
    insured: list[dict[str, Any]] | None


@dataclass
class PackageResult:
    package: QuotePackage
    # Per request position: the quote, or None with the reason in `errors`.
    slots: list[Quote | None]
    errors: dict[str, Any]


def check_envelope(
    errors: Errors,
    *,
    currency: str | None,
    customer_country: str | None,
    customer_language: str | None,
) -> None:
    if currency is not None and not is_currency(currency):
        errors.add("currency", currency_error(currency))
    if customer_country is not None and not is_country(customer_country):
        errors.add("customer_country", country_error(customer_country))
    if customer_language is not None and not is_language(customer_language):
        errors.add(
            "customer_language",
            f"'{customer_language}' is not an ISO 639-1 language code (e.g. 'en' or 'en-us').",
        )


def _parse_start(errors: Errors, value: str, now: datetime) -> datetime | None:
    try:
        start = parse_rfc3339(value)
    except ValueError:
        errors.add("policy_start_date", f"'{value}' is not an RFC 3339 date-time.")
        return None
    if start < now - START_TOLERANCE:
        errors.add("policy_start_date", "The policy start date cannot be in the past.")
        return None
    return start


def _prepare(
    errors: Errors,
    product: ResolvedProduct,
    fields: dict[str, Any],
    start_text: str,
    insured: list[dict[str, Any]] | None,
    now: datetime,
) -> PreparedItem | None:
    field_errors = validate_fields(product.definition, fields)
    start = _parse_start(errors, start_text, now)
    if field_errors:
        errors.merge(field_errors)
        return None
    if start is None:
        return None
    try:
        end = policy_end(product.definition, fields, start)
    except RatingError as exc:
        errors.merge(exc.field_errors)
        return None
    return PreparedItem(product, fields, start, end, insured)


async def prepare_items(
    catalog: Catalog, errors: Errors, items: Iterable[QuoteItemIn], now: datetime
) -> list[PreparedItem | None]:
    prepared: list[PreparedItem | None] = []
    for item in items:
        product = await catalog.current(item.policy_type, item.policy_type_version)
        if product is None:
            errors.add(
                "policy_type",
                f"Unknown policy type '{item.policy_type}' (version {item.policy_type_version}).",
            )
            prepared.append(None)
            continue
        prepared.append(
            _prepare(
                errors, product, item.product_fields(), item.policy_start_date, item.insured, now
            )
        )
    return prepared


def _breakdown(rating: Rating) -> dict[str, Any]:
    return {
        "premium": str(rating.premium),
        "taxes": [{"tax_code": t.tax_code, "amount": str(t.amount)} for t in rating.taxes],
        "partner_commission": str(rating.partner_commission),
        "total_commission": str(rating.total_commission),
        "cover_amount": None if rating.cover_amount is None else str(rating.cover_amount),
        "benefits": [
            {
                k: (str(v) if not isinstance(v, (str, int, bool)) and v is not None else v)
                for k, v in benefit.items()
            }
            for benefit in rating.benefits
        ],
    }


def apply_rating(quote: Quote, rating: Rating) -> None:
    currency = rating.currency
    quote.price_minor = to_minor(rating.price, currency)
    quote.premium_minor = to_minor(rating.premium, currency)
    quote.tax_minor = to_minor(rating.total_tax, currency)
    quote.commission_minor = to_minor(rating.total_commission, currency)
    quote.cover_amount_minor = (
        None if rating.cover_amount is None else to_minor(rating.cover_amount, currency)
    )
    quote.breakdown = _breakdown(rating)


def rate_item(
    item: PreparedItem, *, currency: str, customer_country: str | None, fx: FxTable
) -> Rating:
    return rate(
        item.product.definition,
        item.fields,
        currency=currency,
        customer_country=customer_country or "",
        start=item.start,
        end=item.end,
        fx=fx,
    )


def new_quote(
    package_id: str, position: int, item: PreparedItem, rating: Rating, now: datetime
) -> Quote:
    quote = Quote(
        id=ids.quote_id(),
        package_id=package_id,
        position=position,
        product_version_id=item.product.version_id,
        status="RECEIVED",
        fields=item.fields,
        insured={"items": item.insured} if item.insured is not None else None,
        start_at=item.start,
        start_offset=offset_minutes(item.start),
        end_at=item.end,
        end_offset=offset_minutes(item.end),
        total_renewed_times=0,
        created_at=now,
        updated_at=now,
    )
    apply_rating(quote, rating)
    return quote


async def price_new_quotes(
    catalog: Catalog,
    package: QuotePackage,
    prepared: list[PreparedItem],
    first_position: int,
    now: datetime,
) -> tuple[list[Quote | None], dict[str, Any]]:
    fx = await catalog.fx()
    slots: list[Quote | None] = []
    errors: dict[str, Any] = {}
    for offset, item in enumerate(prepared):
        position = first_position + offset
        try:
            rating = rate_item(
                item, currency=package.currency, customer_country=package.customer_country, fx=fx
            )
        except RatingError as exc:
            slots.append(None)
            errors[str(position)] = exc.field_errors
            continue
        slots.append(new_quote(package.id, position, item, rating, now))
    return slots, errors


async def create_package(
    session: AsyncSession,
    catalog: Catalog,
    scope: Scope,
    data: QuotePackageIn,
    *,
    announce: bool = True,
) -> PackageResult:
    """Price a new package and write it, with QUOTE_CREATED. With `announce=False` (an
    instant booking) nothing is written: the caller books the package in the same change,
    then writes it (`insert_loaded`) and records that event instead."""
    errors = Errors()
    check_envelope(
        errors,
        currency=data.currency,
        customer_country=data.customer_country,
        customer_language=data.customer_language,
    )
    prepared = await prepare_items(catalog, errors, data.request, scope.now)
    errors.raise_if_any()
    package = QuotePackage(
        id=ids.package_id(),
        partner_id=scope.partner_id,
        mode=scope.mode,
        status="RECEIVED",
        currency=data.currency,
        customer_country=data.customer_country,
        customer_region=data.customer_region,
        customer_language=data.customer_language,
        partner_transaction_id=data.partner_transaction_id,
        security_token=ids.security_token(),
        is_booking=False,
        created_at=scope.now,
        updated_at=scope.now,
    )
    ready = [item for item in prepared if item is not None]
    slots, pricing_errors = await price_new_quotes(catalog, package, ready, 0, scope.now)
    package.quotes = [quote for quote in slots if quote is not None]
    package.policyholder = None
    package.renewals = []
    if announce:
        await insert_loaded(session, [package, *package.quotes])
        await _record(session, scope, package, EventType.QUOTE_CREATED)
    return PackageResult(package, slots, pricing_errors)


async def load_package(
    session: AsyncSession, scope: Scope, package_id: str, *, lock: bool = False
) -> QuotePackage:
    query = (
        select(QuotePackage)
        .where(
            QuotePackage.id == package_id,
            QuotePackage.partner_id == scope.partner_id,
            QuotePackage.mode == scope.mode,
        )
        .options(*package_loads())
        .execution_options(populate_existing=True)
    )
    if lock:
        query = query.with_for_update()
    package = await session.scalar(query)
    if package is None:
        raise NotFound(f"Quote package {package_id} not found.")
    if lock and package.renewals:
        # The renewal scheduler locks renewals, not packages: a change of the package that
        # may change its renewals waits for a scheduler holding them, then reads them again
        # (and a scheduler skips them meanwhile).
        await session.scalars(
            select(Renewal)
            .where(Renewal.package_id == package.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    return package


def live_quotes(package: QuotePackage) -> list[Quote]:
    return [quote for quote in package.quotes if quote.status in LIVE_QUOTE_STATUSES]


def _require_open(package: QuotePackage) -> None:
    if package.is_booking:
        raise Conflict(f"Quote package {package.id} is booked already; modify the booking.")
    if package.status != "RECEIVED":
        raise Conflict(f"Quote package {package.id} is {package.status.lower()}.")


async def _record(
    session: AsyncSession, scope: Scope, package: QuotePackage, kind: EventType
) -> None:
    await record(
        session,
        partner_id=scope.partner_id,
        mode=scope.mode,
        type=kind,
        resource_type="quote_package",
        resource_id=package.id,
        payload={"id": package.id, "status": package.status},
        at=scope.now,
    )


async def update_package(
    session: AsyncSession,
    catalog: Catalog,
    scope: Scope,
    package_id: str,
    data: QuotePackageUpdateIn,
) -> QuotePackage:
    package = await load_package(session, scope, package_id, lock=True)
    _require_open(package)
    errors = Errors()
    check_envelope(
        errors,
        currency=data.currency,
        customer_country=data.customer_country,
        customer_language=data.customer_language,
    )
    quotes = {quote.id: quote for quote in live_quotes(package)}
    changes = {}
    for item in data.request:
        if item.quote_id not in quotes:
            errors.add("quote_id", f"Quote {item.quote_id} is not in this package.")
            continue
        if item.quote_id in changes:
            errors.add("quote_id", f"Quote {item.quote_id} is listed twice.")
            continue
        changes[item.quote_id] = item
    errors.raise_if_any()

    currency = data.currency or package.currency
    country = data.customer_country or package.customer_country
    definitions = await catalog.definitions({q.product_version_id for q in quotes.values()})
    prepared: dict[str, PreparedItem] = {}
    for quote in quotes.values():
        change = changes.get(quote.id)
        fields = {**quote.fields, **(change.product_fields() if change else {})}
        start_text = (
            change.policy_start_date
            if change is not None and change.policy_start_date is not None
            else quote_start(quote).isoformat()
        )
        product = ResolvedProduct(quote.product_version_id, definitions[quote.product_version_id])
        insured = change.insured if change is not None and change.insured is not None else None
        ready = _prepare(errors, product, fields, start_text, insured, scope.now)
        if ready is not None:
            prepared[quote.id] = ready
    errors.raise_if_any()

    fx = await catalog.fx()
    ratings = {}
    for quote_id, ready in prepared.items():
        try:
            ratings[quote_id] = rate_item(ready, currency=currency, customer_country=country, fx=fx)
        except RatingError as exc:
            errors.merge(exc.field_errors)
    errors.raise_if_any()

    for quote_id, rating in ratings.items():
        quote, ready = quotes[quote_id], prepared[quote_id]
        quote.fields = ready.fields
        quote.start_at, quote.start_offset = ready.start, offset_minutes(ready.start)
        quote.end_at, quote.end_offset = ready.end, offset_minutes(ready.end)
        if ready.insured is not None:
            quote.insured = {"items": ready.insured}
        apply_rating(quote, rating)
        quote.updated_at = scope.now
    package.currency = currency
    package.customer_country = country
    if data.customer_region is not None:
        package.customer_region = data.customer_region
    if data.customer_language is not None:
        package.customer_language = data.customer_language
    if data.partner_transaction_id is not None:
        package.partner_transaction_id = data.partner_transaction_id
    package.updated_at = scope.now
    await _record(session, scope, package, EventType.QUOTE_UPDATED)
    return package


def quote_start(quote: Quote) -> datetime:
    return with_offset(quote.start_at, quote.start_offset)


async def add_quotes(
    session: AsyncSession, catalog: Catalog, scope: Scope, package_id: str, data: AddQuotesIn
) -> PackageResult:
    package = await load_package(session, scope, package_id, lock=True)
    _require_open(package)
    errors = Errors()
    prepared = await prepare_items(catalog, errors, data.request, scope.now)
    errors.raise_if_any()
    first = max((quote.position for quote in package.quotes), default=-1) + 1
    ready = [item for item in prepared if item is not None]
    slots, pricing_errors = await price_new_quotes(catalog, package, ready, first, scope.now)
    for quote in slots:
        if quote is not None:
            package.quotes.append(quote)
    package.updated_at = scope.now
    await _record(session, scope, package, EventType.QUOTE_UPDATED)
    return PackageResult(package, slots, pricing_errors)


async def delete_quotes(
    session: AsyncSession, scope: Scope, package_id: str, data: DeleteQuotesIn
) -> QuotePackage:
    package = await load_package(session, scope, package_id, lock=True)
    _require_open(package)
    quotes = {quote.id: quote for quote in live_quotes(package)}
    errors = Errors()
    seen: set[str] = set()
    for ref in data.quotes:
        if ref.id not in quotes:
            errors.add("quotes", f"Quote {ref.id} is not in this package.")
        elif ref.id in seen:
            errors.add("quotes", f"Quote {ref.id} is listed twice.")
        seen.add(ref.id)
    errors.raise_if_any()
    for ref in data.quotes:
        quotes[ref.id].status = "DELETED"
        quotes[ref.id].updated_at = scope.now
    package.updated_at = scope.now
    await _record(session, scope, package, EventType.QUOTE_UPDATED)
    return package


async def opt_out(session: AsyncSession, scope: Scope, package_id: str) -> QuotePackage:
    package = await load_package(session, scope, package_id, lock=True)
    _require_open(package)
    package.status = "OPTED_OUT"
    package.updated_at = scope.now
    await _record(session, scope, package, EventType.QUOTE_OPTED_OUT)
    return package


def definitions_needed(package: QuotePackage) -> set[str]:
    return {quote.product_version_id for quote in package.quotes}
