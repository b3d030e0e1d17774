"""What a cancelled quote gives back: a pure function of the money paid, the period of cover,
the moment of cancellation and the product's cancellation terms.

- Within the cooling-off period (`cooling_off_days` after the booking was confirmed), while
  the cover has not ended: everything paid comes back, without a fee.
- Once the cover has ended: nothing.
- Otherwise, pro rata: what was paid less the premium earned for the cover already used
  (each period's price times the used part of that period, to the microsecond; a renewed
  quote has a period for each renewal paid), less the adjustment fee (a flat amount, or a
  percentage of that refund). Before a period starts nothing of it is used yet.

The refund is never negative and never more than what was paid. Amounts are `Decimal`,
rounded half-up once to the currency's minor units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Context, Decimal, localcontext
from typing import Self

from coverline.catalog.definition import CancellationDefinition, FlatAdjustmentFee
from coverline.catalog.rating import FxTable
from coverline.kit.money import quantize

_ARITHMETIC = Context(prec=60)
# Durations are compared in whole microseconds, exactly.
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class CancellationTerms:
    """A product's cancellation terms, with a flat fee already in the quote currency."""

    cooling_off_days: int = 0
    flat_fee: Decimal | None = None
    fee_rate: Decimal | None = None  # percent of the pro rata refund

    @classmethod
    def of(cls, terms: CancellationDefinition, currency: str, base: str, fx: FxTable) -> Self:
        fee = terms.adjustment_fee
        if fee is None:
            return cls(terms.cooling_off_days)
        if isinstance(fee, FlatAdjustmentFee):
            flat = quantize(fx.convert(fee.amount, base, currency), currency)
            return cls(terms.cooling_off_days, flat_fee=flat)
        return cls(terms.cooling_off_days, fee_rate=fee.rate)


@dataclass(frozen=True)
class Refund:
    refund: Decimal
    adjustment_fee: Decimal
    # The end of the cooling-off period; None when the product has none.
    cooling_off_until: datetime | None


def cooling_off_until(confirmed_at: datetime, terms: CancellationTerms) -> datetime | None:
    if terms.cooling_off_days <= 0:
        return None
    return confirmed_at + timedelta(days=terms.cooling_off_days)


@dataclass(frozen=True)
class Period:
    """A period of cover paid for: its price (premium and taxes) and how much of it the
    customer has paid (less than the price while instalments are outstanding)."""

    start: datetime
    end: datetime
    price: Decimal
    paid: Decimal


def refund_for(
    *,
    periods: Sequence[Period],
    currency: str,
    confirmed_at: datetime,
    at: datetime,
    terms: CancellationTerms,
) -> Refund:
    """The refund of a quote cancelled at `at`, over the periods paid for, in order (one, or
    one more for each renewal paid): each earns its own price over its own time."""
    if not periods:
        raise ValueError("a quote has at least one period of cover")
    for period in periods:
        if not Decimal(0) <= period.paid <= period.price:
            raise ValueError(f"paid {period.paid} must be between 0 and the price {period.price}")
        if period.end <= period.start:
            raise ValueError("the cover must end after it starts")
    paid = sum((period.paid for period in periods), Decimal(0))
    until = cooling_off_until(confirmed_at, terms)
    if at >= periods[-1].end:
        return Refund(Decimal(0), Decimal(0), until)
    if until is not None and at <= until:
        return Refund(paid, Decimal(0), until)
    with localcontext(_ARITHMETIC):
        earned = sum((_earned(period, at) for period in periods), Decimal(0))
        due = min(quantize(max(paid - earned, Decimal(0)), currency), paid)
        if terms.flat_fee is not None:
            fee = terms.flat_fee
        elif terms.fee_rate is not None:
            fee = quantize(due * terms.fee_rate / 100, currency)
        else:
            fee = Decimal(0)
    fee = min(fee, due)
    return Refund(quantize(due - fee, currency), quantize(fee, currency), until)


def _earned(period: Period, at: datetime) -> Decimal:
    """The premium `period` has earned by `at`: its price times the share of it used."""
    total = (period.end - period.start) // _TICK
    used = min(max((at - period.start) // _TICK, 0), total)
    return period.price * used / total
