"""Properties of refunds and instalment splits, for any price, currency, period and moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from coverline.bookings.instalments import instalment_amounts, split
from coverline.bookings.refunds import CancellationTerms, Period, Refund, refund_for
from coverline.catalog.definition import DEMO_CATALOG_PATH, load_catalog_file
from coverline.catalog.rating import policy_end
from coverline.kit.dates import offset_minutes, partner_time, with_offset
from coverline.kit.money import from_minor, quantize

CATALOG = load_catalog_file(DEMO_CATALOG_PATH)
GADGET = CATALOG.find_product("gadget_cover")
TICKETS = CATALOG.find_product("event_ticket_protection")
assert GADGET is not None and TICKETS is not None
CURRENCIES = ["GBP", "JPY", "BHD", "NGN", "USD"]
SECOND = timedelta(seconds=1)

offsets = st.integers(min_value=-12 * 4, max_value=14 * 4).map(
    lambda quarters: timezone(timedelta(minutes=15 * quarters))
)
moments = st.builds(
    lambda naive, zone: naive.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2035, 12, 31)),
    offsets,
)
durations = st.integers(min_value=60, max_value=2 * 366 * 86400).map(
    lambda seconds: timedelta(seconds=seconds)
)


@st.composite
def fees(draw: st.DrawFn, currency: str) -> CancellationTerms:
    days = draw(st.integers(min_value=0, max_value=30))
    kind = draw(st.sampled_from(["none", "flat", "percentage"]))
    if kind == "flat":
        minor = draw(st.integers(min_value=0, max_value=10_000))
        return CancellationTerms(days, flat_fee=from_minor(minor, currency))
    if kind == "percentage":
        rate = draw(st.decimals(min_value=0, max_value=100, places=2))
        return CancellationTerms(days, fee_rate=rate)
    return CancellationTerms(days)


@st.composite
def policies(draw: st.DrawFn) -> dict[str, object]:
    currency = draw(st.sampled_from(CURRENCIES))
    price_minor = draw(st.integers(min_value=0, max_value=10**9))
    paid_minor = draw(st.integers(min_value=0, max_value=price_minor))
    start = draw(moments)
    end = start + draw(durations)
    confirmed_at = start - draw(st.integers(min_value=-300, max_value=400 * 86400)) * SECOND
    return {
        "price": from_minor(price_minor, currency),
        "paid": from_minor(paid_minor, currency),
        "currency": currency,
        "start": start,
        "end": end,
        "confirmed_at": confirmed_at,
        "terms": draw(fees(currency)),
    }


def moments_of(policy: dict[str, object]) -> st.SearchStrategy[datetime]:
    """A moment from the booking to a while after the cover ends."""
    confirmed_at, end = policy["confirmed_at"], policy["end"]
    assert isinstance(confirmed_at, datetime) and isinstance(end, datetime)
    span = int((end - confirmed_at).total_seconds()) + 40 * 86400
    return st.integers(min_value=0, max_value=span).map(lambda s: confirmed_at + s * SECOND)


def refund(policy: dict[str, object], at: datetime) -> Refund:
    """The refund of a policy of one period."""
    return one_period(at=at, **policy)  # type: ignore[arg-type]


def one_period(
    *, price: Decimal, paid: Decimal, start: datetime, end: datetime, **rest: object
) -> Refund:
    return refund_for(periods=[Period(start, end, price, paid)], **rest)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.data(), policies())
def test_a_refund_is_never_negative_nor_more_than_was_paid(
    data: st.DataObject, policy: dict[str, object]
) -> None:
    result = refund(policy, data.draw(moments_of(policy)))
    paid = policy["paid"]
    assert isinstance(paid, Decimal)
    currency = str(policy["currency"])
    assert Decimal(0) <= result.refund <= paid
    assert Decimal(0) <= result.adjustment_fee
    assert result.refund + result.adjustment_fee <= paid
    assert result.refund == quantize(result.refund, currency)
    assert result.adjustment_fee == quantize(result.adjustment_fee, currency)


@settings(max_examples=300)
@given(st.data(), policies())
def test_everything_paid_comes_back_within_the_cooling_off_period(
    data: st.DataObject, policy: dict[str, object]
) -> None:
    terms = policy["terms"]
    confirmed_at, end = policy["confirmed_at"], policy["end"]
    assert isinstance(terms, CancellationTerms)
    assert isinstance(confirmed_at, datetime) and isinstance(end, datetime)
    assume(terms.cooling_off_days > 0)
    until = min(confirmed_at + timedelta(days=terms.cooling_off_days), end - SECOND)
    assume(until >= confirmed_at)
    seconds = int((until - confirmed_at).total_seconds())
    at = confirmed_at + data.draw(st.integers(min_value=0, max_value=seconds)) * SECOND
    result = refund(policy, at)
    assert (result.refund, result.adjustment_fee) == (policy["paid"], Decimal(0))
    assert result.cooling_off_until == confirmed_at + timedelta(days=terms.cooling_off_days)


@settings(max_examples=300)
@given(st.data(), policies())
def test_nothing_comes_back_once_the_cover_has_ended(
    data: st.DataObject, policy: dict[str, object]
) -> None:
    end = policy["end"]
    assert isinstance(end, datetime)
    at = end + data.draw(st.integers(min_value=0, max_value=400 * 86400)) * SECOND
    result = refund(policy, at)
    assert (result.refund, result.adjustment_fee) == (Decimal(0), Decimal(0))


@settings(max_examples=300)
@given(st.data(), policies())
def test_a_later_cancellation_never_gives_back_more(
    data: st.DataObject, policy: dict[str, object]
) -> None:
    earlier, later = sorted([data.draw(moments_of(policy)), data.draw(moments_of(policy))])
    assert refund(policy, earlier).refund >= refund(policy, later).refund


@settings(max_examples=200)
@given(st.data(), policies())
def test_before_the_cover_starts_only_the_fee_is_kept(
    data: st.DataObject, policy: dict[str, object]
) -> None:
    terms, start, paid = policy["terms"], policy["start"], policy["paid"]
    assert isinstance(terms, CancellationTerms) and isinstance(start, datetime)
    assert isinstance(paid, Decimal)
    # Booked long enough before the start for the cooling-off period to end first.
    ahead = data.draw(st.integers(min_value=1, max_value=400 * 86400)) * SECOND
    confirmed_at = start - timedelta(days=terms.cooling_off_days) - ahead
    policy = {**policy, "confirmed_at": confirmed_at}
    result = refund(policy, confirmed_at + timedelta(days=terms.cooling_off_days) + ahead / 2)
    if terms.flat_fee is not None:
        fee = min(terms.flat_fee, paid)
    elif terms.fee_rate is not None:
        fee = quantize(paid * terms.fee_rate / 100, str(policy["currency"]))
    else:
        fee = Decimal(0)
    assert (result.refund, result.adjustment_fee) == (paid - fee, fee)


def test_refuses_what_cannot_be() -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    common = {
        "currency": "GBP",
        "start": start,
        "confirmed_at": start,
        "at": start,
        "terms": CancellationTerms(),
    }
    with pytest.raises(ValueError, match="paid 3 must be between 0 and the price 2"):
        one_period(price=Decimal(2), paid=Decimal(3), end=start + SECOND, **common)
    with pytest.raises(ValueError, match="the cover must end after it starts"):
        one_period(price=Decimal(2), paid=Decimal(2), end=start, **common)
    with pytest.raises(ValueError, match="at least one period"):
        refund_for(
            periods=[], currency="GBP", confirmed_at=start, at=start, terms=CancellationTerms()
        )


@settings(max_examples=300)
@given(
    st.sampled_from(CURRENCIES),
    st.lists(st.integers(min_value=0, max_value=10**7), min_size=2, max_size=4),
    moments,
    durations,
    st.data(),
)
def test_a_renewed_quote_earns_each_period_at_its_own_price(
    currency: str, prices: list[int], start: datetime, length: timedelta, data: st.DataObject
) -> None:
    """Periods one after another, each paid at its own price: cancelled in one of them, the
    ones before are used up, the ones after come back whole, and the one it falls in pro rata
    at its own price."""
    bounds = [start + length * index for index in range(len(prices) + 1)]
    periods = [
        Period(bounds[i], bounds[i + 1], from_minor(p, currency), from_minor(p, currency))
        for i, p in enumerate(prices)
    ]
    current = data.draw(st.integers(min_value=0, max_value=len(prices) - 1))
    used = data.draw(st.integers(min_value=0, max_value=int(length.total_seconds()) - 1))
    at = bounds[current] + used * SECOND
    result = refund_for(
        periods=periods,
        currency=currency,
        confirmed_at=start - timedelta(days=400),
        at=at,
        terms=CancellationTerms(),
    )
    this = periods[current]
    left, whole = (this.end - at) // SECOND, (this.end - this.start) // SECOND
    unused = this.price * left / whole
    later = sum((period.price for period in periods[current + 1 :]), Decimal(0))
    expected = quantize(later + unused, currency)
    # Time is counted to the microsecond and amounts in Decimal: within one minor unit.
    assert abs(result.refund - expected) <= from_minor(1, currency)
    assert Decimal(0) <= result.refund <= sum(period.paid for period in periods)


def test_a_renewed_month_refunds_its_own_unused_half() -> None:
    """Two months paid at 15.75 each, cancelled halfway through the second: half of the second
    month back (not half a month's price spread over both)."""
    start = datetime(2030, 1, 11, 12, tzinfo=UTC)
    renewed, end = datetime(2030, 2, 11, 12, tzinfo=UTC), datetime(2030, 3, 11, 12, tzinfo=UTC)
    price = Decimal("15.75")
    result = refund_for(
        periods=[Period(start, renewed, price, price), Period(renewed, end, price, price)],
        currency="GBP",
        confirmed_at=start,
        at=datetime(2030, 2, 25, 12, tzinfo=UTC),
        terms=CancellationTerms(fee_rate=Decimal(10)),
    )
    assert (result.refund, result.adjustment_fee) == (Decimal("7.09"), Decimal("0.79"))


# ---------------------------------------------------------------------------- periods


@settings(max_examples=300)
@given(moments)
def test_a_month_of_cover_keeps_the_offset_and_the_calendar(start: datetime) -> None:
    assert GADGET is not None
    end = policy_end(GADGET, {}, start)
    assert end.utcoffset() == start.utcoffset()
    local = start.replace(tzinfo=None) + relativedelta(months=1)
    assert end.replace(tzinfo=None) == local  # 31 January + 1 month: 28 or 29 February
    assert timedelta(days=28) <= end - start <= timedelta(days=31)
    # Stored as an instant and an offset, shown as the partner sent it.
    stored = end.astimezone(UTC)
    assert partner_time(with_offset(stored, offset_minutes(end))) == end.isoformat()
    # Half the month used, after the cooling-off period: half the price back.
    half = start + (end - start) / 2
    result = one_period(
        price=Decimal("31.00"),
        paid=Decimal("31.00"),
        currency="GBP",
        start=start,
        end=end,
        confirmed_at=start,
        at=half,
        terms=CancellationTerms(),
    )
    assert result.refund == Decimal("15.50")


zones = st.sampled_from(["Europe/London", "America/New_York", "Australia/Sydney"])


@settings(max_examples=300)
@given(
    zones,
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2034, 12, 31)),
    st.integers(min_value=1, max_value=200),
)
def test_a_policy_across_a_change_of_summer_time_keeps_both_offsets_and_its_length(
    zone_name: str, local_start: datetime, days: int
) -> None:
    assert TICKETS is not None
    zone = ZoneInfo(zone_name)
    local = local_start.replace(tzinfo=zone, microsecond=0)
    local_end = local + timedelta(days=days)  # the same wall-clock time, days later
    # Each date with its own offset, as a partner sends them.
    sent_start, sent_end = local.isoformat(), local_end.isoformat()
    start = datetime.fromisoformat(sent_start)
    end = policy_end(TICKETS, {"event_datetime": sent_end}, start)
    assert end.isoformat() == sent_end
    shift = (local_end.utcoffset() or timedelta(0)) - (local.utcoffset() or timedelta(0))
    assert end - start == timedelta(days=days) - shift
    for moment in (start, end):
        stored = moment.astimezone(UTC)
        assert partner_time(with_offset(stored, offset_minutes(moment))) == moment.isoformat()
    result = one_period(
        price=Decimal("100.00"),
        paid=Decimal("100.00"),
        currency="GBP",
        start=start,
        end=end,
        confirmed_at=start - timedelta(days=30),
        at=start + (end - start) / 4,
        terms=CancellationTerms(14),
    )
    assert result.refund == Decimal("75.00")


# ---------------------------------------------------------------------------- instalments


@settings(max_examples=500)
@given(
    st.integers(min_value=0, max_value=10**10),
    st.lists(st.integers(min_value=0, max_value=10**8), max_size=4),
    st.integers(min_value=0, max_value=100),
    st.integers(min_value=2, max_value=60),
)
def test_instalments_add_up_to_the_price_and_each_tax(
    premium: int, taxes: list[int], commission_rate: int, count: int
) -> None:
    price = premium + sum(taxes)
    commission = premium * commission_rate // 100
    lines = [(f"T{index}", amount) for index, amount in enumerate(taxes)]
    shares = instalment_amounts(price, lines, commission, count)
    assert [share.total for share in shares] == split(price, count)
    assert sum(share.total for share in shares) == price
    assert sum(share.premium for share in shares) == premium
    assert sum(share.commission for share in shares) == commission
    for index, (code, amount) in enumerate(lines):
        assert sum(share.taxes[index][1] for share in shares) == amount
        assert all(share.taxes[index][0] == code for share in shares)
    for share in shares:
        assert share.premium >= 0
        assert share.commission >= 0
        assert all(amount >= 0 for _code, amount in share.taxes)
        assert share.premium + sum(amount for _code, amount in share.taxes) == share.total
    # Only the first instalment carries the rounding remainder.
    assert len({share.total for share in shares[1:]}) == 1
    assert shares[0].total - shares[1].total < count
