from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from coverline.catalog.definition import (
    DEMO_CATALOG_PATH,
    MinimumPremiumRule,
    ProductDefinition,
    load_catalog_file,
)
from coverline.catalog.rating import FxTable, Rating, RatingError, policy_end, rate, validate_fields
from coverline.kit.money import minor_units, quantize

CATALOG = load_catalog_file(DEMO_CATALOG_PATH)
FX = FxTable.from_definition(CATALOG.fx)
PRODUCTS = {product.policy_type: product for product in CATALOG.products}
CURRENCIES = ["GBP", "USD", "EUR", "AUD", "NGN", "JPY", "BHD"]
COUNTRIES = ["GB", "NG", "AU", "US", "DE", "JP", "BH", "FR"]

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def money(max_value: int, places: int = 2) -> st.SearchStrategy[Any]:
    """Amounts as a partner's JSON would carry them: integers or floats with a few decimals."""
    cents = st.integers(min_value=1, max_value=max_value * 10**places)
    return st.one_of(
        st.integers(min_value=1, max_value=max_value),
        cents.map(lambda minor: float(Decimal(minor).scaleb(-places))),
    )


offsets = st.sampled_from([timedelta(0), timedelta(hours=1), timedelta(hours=-5, minutes=-30)])


@st.composite
def starts(draw: st.DrawFn) -> datetime:
    offset = draw(offsets)
    moment = draw(st.datetimes(min_value=datetime(2021, 1, 1), max_value=datetime(2030, 12, 31)))
    return moment.replace(tzinfo=timezone(offset))


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@st.composite
def event_requests(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    start = draw(starts())
    event = start + draw(
        st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(days=700))
    )
    fields = {
        "event_datetime": rfc3339(event),
        "event_name": draw(st.text(min_size=1, max_size=20)),
        "event_location": "The O2",
        "number_of_tickets": draw(st.integers(min_value=1, max_value=100)),
        "tickets": draw(
            st.lists(st.fixed_dictionaries({"price": money(100000)}), min_size=1, max_size=5)
        ),
        "resale_ticket": draw(st.booleans()),
        "event_country": draw(st.sampled_from(COUNTRIES)),
    }
    return fields, start


@st.composite
def travel_requests(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    start = draw(starts())
    end = start + draw(st.timedeltas(min_value=timedelta(hours=1), max_value=timedelta(days=180)))
    fields = {
        "policy_end_date": rfc3339(end),
        "destination_country": draw(st.sampled_from([*COUNTRIES, "CA"])),
        "travellers": draw(
            st.lists(
                st.fixed_dictionaries({"age": st.integers(min_value=0, max_value=84)}),
                min_size=1,
                max_size=10,
            )
        ),
    }
    return fields, start


@st.composite
def parcel_requests(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    fields = {
        "parcel_value": draw(money(50000000)),
        "carrier": "DHL",
        "destination_country": draw(st.sampled_from(COUNTRIES)),
        "tracking_number": "1Z999AA10123456784",
    }
    return fields, draw(starts())


@st.composite
def gadget_requests(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    fields = {
        "device_type": draw(st.sampled_from(["phone", "tablet", "laptop", "wearable"])),
        "device_make": "Samsung",
        "device_model": "Galaxy",
        "device_value": draw(money(20000000)),
    }
    return fields, draw(starts())


requests = st.one_of(
    st.tuples(st.just("event_ticket_protection"), event_requests()),
    st.tuples(st.just("travel_medical"), travel_requests()),
    st.tuples(st.just("parcel_protection"), parcel_requests()),
    st.tuples(st.just("gadget_cover"), gadget_requests()),
)


def amounts(rating: Rating) -> list[Decimal]:
    found = [
        rating.premium,
        rating.total_tax,
        rating.price,
        rating.partner_commission,
        rating.total_commission,
        *(line.amount for line in rating.taxes),
    ]
    if rating.cover_amount is not None:
        found.append(rating.cover_amount)
    found.extend(
        benefit[key] for benefit in rating.benefits for key in ("limit", "excess") if key in benefit
    )
    return found


def minimum_premium(definition: ProductDefinition, currency: str) -> Decimal:
    minimums = [rule.amount for rule in definition.pricing if isinstance(rule, MinimumPremiumRule)]
    if not minimums:
        return Decimal(0)
    return quantize(FX.convert(minimums[0], definition.base_currency, currency), currency)


@PROPERTY_SETTINGS
@given(
    request=requests,
    currency=st.sampled_from(CURRENCIES),
    country=st.sampled_from(COUNTRIES),
)
def test_rating_invariants(
    request: tuple[str, tuple[dict[str, Any], datetime]], currency: str, country: str
) -> None:
    policy_type, (fields, start) = request
    definition = PRODUCTS[policy_type]
    assert validate_fields(definition, fields) == {}
    end = policy_end(definition, fields, start)
    assert end > start

    rating = rate(
        definition, fields, currency=currency, customer_country=country, start=start, end=end, fx=FX
    )

    exponent = -minor_units(currency)
    for amount in amounts(rating):
        assert amount.as_tuple().exponent == exponent, amount
        assert amount >= 0
    for benefit in rating.benefits:
        for key in ("limit_policy_currency", "excess_policy_currency"):
            if key in benefit:
                assert benefit[key].as_tuple().exponent == -minor_units(definition.base_currency)
    assert rating.total_tax == sum((line.amount for line in rating.taxes), Decimal(0))
    assert rating.price == rating.premium + sum((line.amount for line in rating.taxes), Decimal(0))
    assert rating.premium >= minimum_premium(definition, currency)
    assert rating.partner_commission <= rating.premium
    assert rating.total_commission == rating.partner_commission
    assert rating.currency == currency


@PROPERTY_SETTINGS
@given(
    amount=st.integers(min_value=0, max_value=10**10),
    origin=st.sampled_from(CURRENCIES),
    through=st.sampled_from(CURRENCIES),
)
def test_fx_round_trip_within_one_minor_unit(amount: int, origin: str, through: str) -> None:
    original = Decimal(amount).scaleb(-minor_units(origin))
    there = quantize(FX.convert(original, origin, through), through)
    back = quantize(FX.convert(there, through, origin), origin)

    origin_unit = Decimal(1).scaleb(-minor_units(origin))
    # Rounding in the intermediate currency can lose at most half its minor unit; when that
    # unit is worth more than the origin's (yen, or pounds seen from dinars) the bound is it.
    through_unit = FX.convert(Decimal(1).scaleb(-minor_units(through)), through, origin)
    assert abs(back - original) <= max(origin_unit, through_unit)


@PROPERTY_SETTINGS
@given(amount=st.integers(min_value=0, max_value=10**10), currency=st.sampled_from(CURRENCIES))
def test_fx_exact_round_trip_before_rounding(amount: int, currency: str) -> None:
    original = Decimal(amount).scaleb(-minor_units(currency))
    back = FX.convert(FX.convert(original, currency, "AUD"), "AUD", currency)

    assert quantize(back, currency) == original


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=100, deadline=None)
@given(
    policy_type=st.sampled_from(sorted(PRODUCTS)),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "event_datetime",
                "tickets",
                "number_of_tickets",
                "resale_ticket",
                "travellers",
                "policy_end_date",
                "parcel_value",
                "device_type",
                "device_value",
                "destination_country",
                "surprise",
            ]
        ),
        json_values,
    ),
)
def test_any_input_gives_errors_never_a_crash(policy_type: str, fields: dict[str, Any]) -> None:
    definition = PRODUCTS[policy_type]
    start = datetime(2024, 1, 1, tzinfo=UTC)

    errors = validate_fields(definition, fields)

    assert isinstance(errors, dict)
    for value in errors.values():
        assert value == "Unexpected field" or (isinstance(value, list) and value)
    try:
        end = policy_end(definition, fields, start)
        rate(definition, fields, currency="GBP", customer_country="GB", start=start, end=end, fx=FX)
    except RatingError as error:
        assert error.field_errors
