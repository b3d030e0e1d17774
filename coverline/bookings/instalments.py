"""Instalment plans: a quote's price paid in monthly instalments.

A product with an `instalments: {count}` section offers one plan, `count` monthly payments
(`1year-monthly` for 12). Booking a quote with that plan splits its price into `count`
parts in minor units, the rounding remainder on the first instalment, each with its share of
every tax, so that the instalments add up to the price (and to each tax) exactly. The first
instalment is paid when the booking is confirmed; the partner reports the others
(`POST bookings/{id}/instalments/`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.bookings.models import Instalment
from coverline.catalog.definition import FixedTax, ProductDefinition
from coverline.catalog.service import Catalog
from coverline.kit import ids
from coverline.kit.dates import parse_rfc3339, with_offset
from coverline.kit.errors import Conflict, ValidationFailed
from coverline.kit.money import format_money, from_minor, json_number, to_minor
from coverline.quotes.models import Quote, QuotePackage

PAID = "PAID"
UNPAID = "UNPAID"
FAILED = "FAILED"
CANCELLED = "CANCELLED"


# ---------------------------------------------------------------------------------------------
# Plans


def plan_name(count: int) -> tuple[str, str]:
    """(`1year-monthly`, `1Year-Monthly`): XCover's names for a plan of monthly payments."""
    if count % 12 == 0:
        years = count // 12
        return f"{years}year-monthly", f"{years}Year-Monthly"
    return f"{count}month-monthly", f"{count}Month-Monthly"


def offered_plan(definition: ProductDefinition) -> str | None:
    if definition.instalments is None:
        return None
    return plan_name(definition.instalments.count)[0]


def plans_json(definition: ProductDefinition, price_minor: int, currency: str) -> list[Any]:
    """The plans a quote offers, as quote responses list them; `amount` is the total paid."""
    if definition.instalments is None:
        return []
    name, label = plan_name(definition.instalments.count)
    return [
        {"name": name, "label": label, "amount": json_number(from_minor(price_minor, currency))}
    ]


def split(total: int, count: int) -> list[int]:
    """`total` minor units in `count` parts that add up to it; the remainder on the first."""
    part, remainder = divmod(total, count)
    return [part + remainder, *([part] * (count - 1))]


def allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """`amount` minor units in parts proportional to `weights`, adding up to it exactly.

    Cumulative rounding: part k is the rounded share of the first k weights less the rounded
    share of the first k - 1, so no part is negative and the rounding never accumulates.
    """
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    parts, done, running = [], 0, 0
    for weight in weights:
        running += weight
        upto = (2 * amount * running + whole) // (2 * whole)
        parts.append(upto - done)
        done = upto
    return parts


@dataclass(frozen=True)
class InstalmentAmounts:
    total: int
    premium: int
    commission: int
    taxes: tuple[tuple[str, int], ...]


def instalment_amounts(
    price: int, taxes: Sequence[tuple[str, int]], commission: int, count: int
) -> list[InstalmentAmounts]:
    """The price in `count` instalments, each with its own share of every tax.

    The totals are the price split evenly, the remainder on the first; each tax is spread in
    proportion to them, and the premium is the rest of each instalment. Instalments, taxes,
    premium and commission all add up to the quote's amounts exactly.
    """
    totals = split(price, count)
    shares = [[*allocate(amount, totals)] for _code, amount in taxes]
    premiums = [total - sum(share[k] for share in shares) for k, total in enumerate(totals)]
    # Rounding up several taxes of one instalment can exceed a tiny premium: move a unit of
    # tax to an instalment with premium to spare (every sum stays the same).
    for k in range(count):
        while premiums[k] < 0:
            share = next(share for share in shares if share[k] > 0)
            spare = next(j for j in range(count) if premiums[j] > 0)
            share[k] -= 1
            share[spare] += 1
            premiums[k] += 1
            premiums[spare] -= 1
    commissions = allocate(commission, totals)
    return [
        InstalmentAmounts(
            total=totals[k],
            premium=premiums[k],
            commission=commissions[k],
            taxes=tuple((code, shares[j][k]) for j, (code, _amount) in enumerate(taxes)),
        )
        for k in range(count)
    ]


def plan_errors(
    package: QuotePackage, plans: Mapping[str, str], definitions: Mapping[str, ProductDefinition]
) -> list[str]:
    """Why the requested plans cannot be used; empty when they all can."""
    quotes = {quote.id: quote for quote in package.quotes}
    problems = []
    for quote_id, plan in plans.items():
        quote = quotes.get(quote_id)
        if quote is None:
            continue  # reported by the booking itself
        definition = definitions[quote.product_version_id]
        offered = offered_plan(definition)
        if offered is None:
            problems.append(
                f"Quote {quote_id} ({definition.policy_name}) is not sold with instalments."
            )
        elif plan != offered:
            problems.append(
                f"Quote {quote_id} offers the instalment plan '{offered}', not '{plan}'."
            )
    return problems


async def check_plans(catalog: Catalog, package: QuotePackage, plans: Mapping[str, str]) -> None:
    """Refuse (422) a booking that asks for a plan its product does not offer."""
    if not plans:
        return
    definitions = await catalog.definitions({quote.product_version_id for quote in package.quotes})
    problems = plan_errors(package, plans, definitions)
    if problems:
        raise ValidationFailed(errors={"instalment_plan": problems})


def schedule_for(
    quote: Quote, plan: str, count: int, currency: str, now: datetime
) -> list[Instalment]:
    """The instalments of a quote, the first paid when the quote is confirmed."""
    taxes = [
        (tax["tax_code"], to_minor(Decimal(tax["amount"]), currency))
        for tax in quote.breakdown.get("taxes", [])
    ]
    amounts = instalment_amounts(quote.price_minor, taxes, quote.commission_minor, count)
    anchor = with_offset(quote.start_at, quote.start_offset)
    instalments = []
    for index, share in enumerate(amounts):
        tax_lines = [{"tax_code": code, "amount_minor": amount} for code, amount in share.taxes]
        paid = index == 0 and quote.status == "CONFIRMED"
        instalments.append(
            Instalment(
                id=ids.quote_id(),
                package_id=quote.package_id,
                quote_id=quote.id,
                plan=plan,
                number=index + 1,
                period_start=anchor + relativedelta(months=index),
                period_end=anchor + relativedelta(months=index + 1),
                status=PAID if paid else UNPAID,
                amount_minor=share.total,
                premium_minor=share.premium,
                commission_minor=share.commission,
                taxes={"lines": tax_lines},
                paid_at=now if paid else None,
                failures=None,
                created_at=now,
                updated_at=now,
            )
        )
    return instalments


async def create_schedules(
    session: AsyncSession,
    catalog: Catalog,
    package: QuotePackage,
    plans: Mapping[str, str],
    now: datetime,
) -> None:
    if not plans:
        return
    definitions = await catalog.definitions({quote.product_version_id for quote in package.quotes})
    for quote in package.quotes:
        plan = plans.get(quote.id)
        instalments = definitions[quote.product_version_id].instalments
        if plan is None or instalments is None:
            continue
        session.add_all(schedule_for(quote, plan, instalments.count, package.currency, now))


async def load_schedules(
    session: AsyncSession, package_id: str, *, lock: bool = False
) -> dict[str, list[Instalment]]:
    """The instalments of a booking by quote id, in order."""
    query = (
        select(Instalment)
        .where(Instalment.package_id == package_id)
        .order_by(Instalment.quote_id, Instalment.number)
    )
    if lock:
        query = query.with_for_update()
    schedules: dict[str, list[Instalment]] = defaultdict(list)
    for instalment in await session.scalars(query):
        schedules[instalment.quote_id].append(instalment)
    return dict(schedules)


def paid_minor(schedule: Iterable[Instalment]) -> int:
    return sum(instalment.amount_minor for instalment in schedule if instalment.status == PAID)


async def settle_first(session: AsyncSession, package_id: str, now: datetime) -> None:
    """The first instalment is paid with the booking's payment."""
    for schedule in (await load_schedules(session, package_id, lock=True)).values():
        first = schedule[0]
        if first.status != PAID:
            first.status = PAID
            first.paid_at = now
            first.updated_at = now


def cancel_unpaid(schedule: Iterable[Instalment], now: datetime) -> None:
    """A cancelled quote collects no more instalments."""
    for instalment in schedule:
        if instalment.status in {UNPAID, FAILED}:
            instalment.status = CANCELLED
            instalment.updated_at = now


# ---------------------------------------------------------------------------------------------
# Payments reported by the partner


class InstalmentPaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(max_length=36, description="The quote paid by instalments.")
    instalment_number: int = Field(ge=1, le=1000)
    payment_status: Literal["PAID", "FAILED"]
    payment_attempted_date: str = Field(description="RFC 3339 date-time of the attempt.")

    @field_validator("payment_attempted_date")
    @classmethod
    def _rfc3339(cls, value: str) -> str:
        try:
            parse_rfc3339(value)
        except ValueError:
            raise ValueError(f"'{value}' is not an RFC 3339 date-time.") from None
        return value

    @property
    def attempted_at(self) -> datetime:
        return parse_rfc3339(self.payment_attempted_date)


class InstalmentPaymentsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quotes: list[InstalmentPaymentIn] = Field(min_length=1, max_length=100)


def record_payments(
    package: QuotePackage,
    schedules: Mapping[str, Sequence[Instalment]],
    data: InstalmentPaymentsIn,
    now: datetime,
) -> None:
    """Apply the partner's payment reports; refuse the whole request if one is wrong.

    A repeated PAID for a paid instalment changes nothing; FAILED may be reported again
    (each attempt is kept); a paid or cancelled instalment cannot fail.
    """
    errors: dict[str, Any] = {}
    conflicts: list[str] = []
    targets: list[tuple[Instalment, InstalmentPaymentIn]] = []
    seen: set[tuple[str, int]] = set()
    for index, item in enumerate(data.quotes):
        schedule = schedules.get(item.id)
        if schedule is None:
            errors[str(index)] = {
                "id": [f"Quote {item.id} of booking {package.id} is not paid by instalments."]
            }
            continue
        if not 1 <= item.instalment_number <= len(schedule):
            errors[str(index)] = {
                "instalment_number": [f"Quote {item.id} has instalments 1 to {len(schedule)}."]
            }
            continue
        key = (item.id, item.instalment_number)
        if key in seen:
            errors[str(index)] = {
                "instalment_number": [
                    f"Instalment {item.instalment_number} of quote {item.id} is listed twice."
                ]
            }
            continue
        seen.add(key)
        instalment = schedule[item.instalment_number - 1]
        where = f"Instalment {instalment.number} of quote {item.id}"
        if instalment.status == CANCELLED:
            conflicts.append(f"{where} is cancelled.")
        elif instalment.status == PAID and item.payment_status == FAILED:
            conflicts.append(f"{where} is paid already.")
        targets.append((instalment, item))
    if errors:
        raise ValidationFailed(errors={"quotes": errors})
    if conflicts:
        raise Conflict(" ".join(conflicts))
    for instalment, item in targets:
        if item.payment_status == PAID:
            if instalment.status != PAID:
                instalment.status = PAID
                instalment.paid_at = item.attempted_at
                instalment.updated_at = now
            continue
        attempts = list((instalment.failures or {}).get("attempts", []))
        attempts.append({"payment_attempted_date": item.payment_attempted_date})
        instalment.status = FAILED
        instalment.failures = {"attempts": attempts}
        instalment.updated_at = now


# ---------------------------------------------------------------------------------------------
# On the wire (the shape of XCover's recorded `GET bookings/{id}/instalments/`)


def rfc3339(moment: datetime) -> str:
    """`2021-11-26T18:56:33Z`, or with the partner's offset when it is not UTC."""
    return moment.isoformat().replace("+00:00", "Z")


def _tax_terms(definition: ProductDefinition, country: str | None) -> dict[str, tuple[str, str]]:
    table = definition.taxes.get((country or "").upper())
    if table is None:
        table = definition.taxes.get("default", [])
    terms = {}
    for tax in table:
        if isinstance(tax, FixedTax):
            terms[tax.tax_code] = ("FIXED_VALUE", str(tax.amount))
        else:
            terms[tax.tax_code] = ("PERCENTAGE", str(tax.rate))
    return terms


def _instalment_json(
    instalment: Instalment, currency: str, offset: int, terms: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    def text(minor: int) -> str:
        return str(from_minor(minor, currency))

    def formatted(minor: int) -> str:
        return format_money(from_minor(minor, currency), currency)

    lines = instalment.taxes.get("lines", [])
    total_tax = sum(line["amount_minor"] for line in lines)
    taxes = []
    for line in lines:
        kind, value = terms.get(line["tax_code"], (None, None))
        taxes.append(
            {
                "tax_code": line["tax_code"],
                "tax_type": kind,
                "tax_label": line["tax_code"],
                "tax_value": value,
                "tax_amount": text(line["amount_minor"]),
                "tax_amount_formatted": formatted(line["amount_minor"]),
            }
        )
    failures = (instalment.failures or {}).get("attempts")
    return {
        "id": instalment.id,
        "number": instalment.number,
        "quote": instalment.quote_id,
        "period_start_date": rfc3339(with_offset(instalment.period_start, offset)),
        "period_end_date": rfc3339(with_offset(instalment.period_end, offset)),
        "status": instalment.status,
        "commission": json_number(from_minor(instalment.commission_minor, currency)),
        "total_amount": json_number(from_minor(instalment.amount_minor, currency)),
        "tax": {
            "taxes": taxes,
            "total_tax": text(total_tax),
            "total_tax_formatted": formatted(total_tax),
            "total_amount_without_tax": text(instalment.premium_minor),
            "total_amount_without_tax_formatted": formatted(instalment.premium_minor),
        },
        "surcharges": {},
        "payment_failures": failures or None,
    }


def paid_until(schedule: Sequence[Instalment]) -> datetime | None:
    """The end of the last period paid without a gap from the first."""
    until = None
    for instalment in schedule:
        if instalment.status != PAID:
            break
        until = instalment.period_end
    return until


def instalments_json(
    package: QuotePackage,
    schedules: Mapping[str, Sequence[Instalment]],
    definitions: Mapping[str, ProductDefinition],
) -> dict[str, Any]:
    currency = package.currency
    quotes = []
    for quote in package.quotes:
        schedule = schedules.get(quote.id)
        if not schedule:
            continue
        terms = _tax_terms(definitions[quote.product_version_id], package.customer_country)
        rendered = [
            _instalment_json(instalment, currency, quote.start_offset, terms)
            for instalment in schedule
        ]
        upcoming = next(
            (
                shown
                for shown, instalment in zip(rendered, schedule, strict=True)
                if instalment.status in {UNPAID, FAILED}
            ),
            None,
        )
        until = paid_until(schedule)
        due = sum(i.amount_minor for i in schedule if i.status in {UNPAID, FAILED})
        quotes.append(
            {
                "id": quote.id,
                "next_payment": upcoming,
                "paid_until": rfc3339(with_offset(until, quote.start_offset)) if until else None,
                "payment_schedule": rendered,
                "total_amount_paid": json_number(from_minor(paid_minor(schedule), currency)),
                "total_amount_due": json_number(from_minor(due, currency)),
            }
        )
    return {"quotes": quotes, "currency": currency}
