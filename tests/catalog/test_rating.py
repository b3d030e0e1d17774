from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from coverline.catalog.definition import (
    DEMO_CATALOG_PATH,
    CatalogDocument,
    ProductDefinition,
    load_catalog_file,
    parse_catalog,
)
from coverline.catalog.rating import (
    FxTable,
    Rating,
    RatingError,
    TaxLine,
    cover_days,
    policy_end,
    rate,
    validate_fields,
)
from coverline.kit.errors import ValidationFailed

CATALOG: CatalogDocument = load_catalog_file(DEMO_CATALOG_PATH)
FX = FxTable.from_definition(CATALOG.fx)


def product(policy_type: str) -> ProductDefinition:
    found = CATALOG.find_product(policy_type)
    assert found is not None
    return found


EVENT = product("event_ticket_protection")
TRAVEL = product("travel_medical")
PARCEL = product("parcel_protection")
GADGET = product("gadget_cover")

# The request recorded in XCover's test_quote.
RECORDED_EVENT: dict[str, Any] = {
    "event_datetime": "2021-10-10T13:44:15Z",
    "event_name": "Ariana Grande",
    "event_location": "The O2",
    "number_of_tickets": 2,
    "tickets": [{"price": 100}],
    "resale_ticket": False,
    "event_country": "GB",
}
RECORDED_START = datetime(2021, 10, 1, 0, 29, 29, tzinfo=UTC)


def d(text: str) -> Decimal:
    return Decimal(text)


def price(
    definition: ProductDefinition,
    fields: dict[str, Any],
    currency: str,
    country: str,
    start: datetime = RECORDED_START,
) -> Rating:
    end = policy_end(definition, fields, start)
    return rate(
        definition, fields, currency=currency, customer_country=country, start=start, end=end, fx=FX
    )


def assert_amounts(rating: Rating, premium: str, taxes: list[tuple[str, str]], total: str) -> None:
    assert str(rating.premium) == premium
    assert [(line.tax_code, str(line.amount)) for line in rating.taxes] == taxes
    assert str(rating.price) == total


# ---------------------------------------------------------------------------------------------
# Exchange rates


def test_fx_converts_through_the_base() -> None:
    assert FX.convert(d("10"), "GBP", "USD") == d("12.70")
    assert FX.convert(d("12.70"), "USD", "GBP") == d("10")
    assert FX.convert(d("1.00"), "GBP", "AUD") == d("1.8685")
    # AUD to USD crosses the base: 18.685 AUD = 10 GBP = 12.70 USD.
    assert FX.convert(d("18.685"), "AUD", "USD") == d("12.7")
    assert FX.convert(d("5"), "JPY", "JPY") == d("5")


def test_fx_refuses_unknown_pairs() -> None:
    with pytest.raises(RatingError) as raised:
        FX.convert(d("1"), "GBP", "CHF")
    assert raised.value.field_errors == {"currency": ["No exchange rate from GBP to CHF."]}
    with pytest.raises(RatingError):
        FxTable(None, {}).convert(d("1"), "GBP", "USD")


# ---------------------------------------------------------------------------------------------
# Event ticket protection


def test_event_recorded_quote_in_gbp() -> None:
    rating = price(EVENT, RECORDED_EVENT, "GBP", "GB")

    # Exactly the recorded XCover response: £0.90 + £1.00 admin fee + £0.11 IPT = £2.01.
    assert_amounts(rating, "0.90", [("Admin. fee", "1.00"), ("IPT", "0.11")], "2.01")
    assert rating.taxes == (TaxLine("Admin. fee", d("1.00")), TaxLine("IPT", d("0.11")))
    assert str(rating.total_tax) == "1.11"
    assert str(rating.partner_commission) == "0.00"
    assert str(rating.total_commission) == "0.00"
    assert str(rating.cover_amount) == "200.00"
    assert rating.currency == "GBP"
    assert rating.policy_currency == "AUD"
    # The recorded benefits: A$10 -> £5.35, A$5 -> £2.68, A$6 -> £3.21, A$15 -> £8.03,
    # A$20 -> £10.70.
    assert rating.benefits == [
        {
            "description": "Rebooking costs when you move to another performance",
            "policy_currency": "AUD",
            "limit": d("5.35"),
            "limit_policy_currency": d("10.00"),
            "excess": d("2.68"),
            "excess_policy_currency": d("5.00"),
        },
        {
            "description": "Ticket refund when you cannot attend",
            "policy_currency": "AUD",
            "limit_description": "Up to the price paid for each ticket",
            "excess": d("3.21"),
            "excess_policy_currency": d("6.00"),
        },
        {
            "description": "Alternative transport when public transport to the venue fails",
            "policy_currency": "AUD",
            "limit": d("8.03"),
            "limit_policy_currency": d("15.00"),
        },
        {
            "description": "Replacement of lost or stolen tickets",
            "policy_currency": "AUD",
            "limit": d("10.70"),
            "limit_policy_currency": d("20.00"),
            "excess_description": "No excess for digital tickets",
        },
        {
            "description": "Event cancelled or moved by the organiser",
            "policy_currency": "AUD",
            "limit_description": "Refunded by the organiser, not by this policy",
            "excess_description": "Not applicable",
        },
    ]


def test_event_recorded_update_in_aud_hits_the_minimum_premium() -> None:
    fields = {**RECORDED_EVENT, "tickets": [{"price": 50}]}

    rating = price(EVENT, fields, "AUD", "GB")

    # The recorded update: 0.45% of A$100 is A$0.45, below the A$0.79 minimum; the £1 admin
    # fee is A$1.87; IPT 12% of A$0.79 is A$0.09; A$2.75 in all.
    assert_amounts(rating, "0.79", [("Admin. fee", "1.87"), ("IPT", "0.09")], "2.75")
    assert str(rating.cover_amount) == "100.00"


def test_event_one_price_per_ticket_or_one_for_all_give_the_same_value() -> None:
    listed = {**RECORDED_EVENT, "tickets": [{"price": 100}, {"price": 100}]}

    assert price(EVENT, listed, "GBP", "GB") == price(EVENT, RECORDED_EVENT, "GBP", "GB")


def test_event_in_naira_with_resale_tickets() -> None:
    fields = {
        **RECORDED_EVENT,
        "tickets": [{"price": 150000}],
        "event_country": "NG",
        "resale_ticket": True,
    }

    rating = price(EVENT, fields, "NGN", "NG")

    # 0.45% of ₦300,000 = ₦1,350 x 1.5 for resale = ₦2,025; VAT 7.5% = ₦151.875.
    assert_amounts(rating, "2025.00", [("VAT", "151.88")], "2176.88")
    assert str(rating.cover_amount) == "300000.00"


def test_event_minimum_premium_converted_to_naira() -> None:
    fields = {**RECORDED_EVENT, "tickets": [{"price": 10000}], "number_of_tickets": 1}

    rating = price(EVENT, fields, "NGN", "NG")

    # A$0.79 = 0.79 / 1.8685 x 2050 = ₦866.738...; VAT 7.5% of ₦866.74 = ₦65.0055.
    assert_amounts(rating, "866.74", [("VAT", "65.01")], "931.75")


def test_event_default_taxes_for_countries_not_listed() -> None:
    rating = price(EVENT, RECORDED_EVENT, "EUR", "DE")

    # 0.45% of €200 = €0.90; the default 5% premium tax is €0.045.
    assert_amounts(rating, "0.90", [("Premium tax", "0.05")], "0.95")


# ---------------------------------------------------------------------------------------------
# Travel medical


TRAVEL_START = datetime(2023, 10, 8, tzinfo=UTC)


def test_travel_per_day_with_age_bands_and_destination() -> None:
    fields = {
        "policy_end_date": "2023-10-13T00:00:00Z",
        "destination_country": "US",
        "travellers": [{"age": 30}, {"age": 70}],
    }

    rating = price(TRAVEL, fields, "USD", "US", TRAVEL_START)

    # $1.524 (£1.20) x 5 days x 2 travellers = $15.24; ages 30 and 70 average 1.4; the US
    # doubles it: $42.672. Premium tax 3% = $1.2801. Commission 20% = $8.534.
    assert_amounts(rating, "42.67", [("Premium tax", "1.28")], "43.95")
    assert str(rating.partner_commission) == "8.53"
    assert str(rating.total_commission) == "8.53"
    assert str(rating.cover_amount) == "6350000.00"


def test_travel_family_in_europe() -> None:
    fields = {
        "policy_end_date": "2023-10-15T00:00:00Z",
        "destination_country": "FR",
        "travellers": [{"age": 40}, {"age": 10}],
    }

    rating = price(TRAVEL, fields, "GBP", "GB", TRAVEL_START)

    # £1.20 x 7 days x 2 = £16.80, x 0.75 (average of 1 and 0.5) = £12.60; IPT 20% = £2.52.
    assert_amounts(rating, "12.60", [("IPT", "2.52")], "15.12")
    assert str(rating.partner_commission) == "2.52"


def test_travel_minimum_premium() -> None:
    fields = {
        "policy_end_date": "2023-10-10T00:00:00Z",
        "destination_country": "ES",
        "travellers": [{"age": 30}],
    }

    rating = price(TRAVEL, fields, "GBP", "NG", TRAVEL_START)

    # £1.20 x 2 days = £2.40, below the £12 minimum; VAT 7.5% = £0.90.
    assert_amounts(rating, "12.00", [("VAT", "0.90")], "12.90")


def test_travel_started_days_count_whole() -> None:
    fields = {
        "policy_end_date": "2023-10-10T00:00:01Z",
        "destination_country": "US",
        "travellers": [{"age": 30}, {"age": 30}],
    }

    rating = price(TRAVEL, fields, "GBP", "AU", TRAVEL_START)

    # 2 days and one second is 3 days: £1.20 x 3 x 2 x 2 (US) = £14.40; GST 10%.
    assert_amounts(rating, "14.40", [("GST", "1.44")], "15.84")


def test_travel_refuses_uninsurable_ages_with_every_reason() -> None:
    fields = {
        "policy_end_date": "2023-10-13T00:00:00Z",
        "destination_country": "US",
        "travellers": [{"age": 30}, {"age": 90}, {"age": 101}],
    }
    end = policy_end(TRAVEL, fields, TRAVEL_START)

    with pytest.raises(RatingError) as raised:
        rate(
            TRAVEL,
            fields,
            currency="GBP",
            customer_country="GB",
            start=TRAVEL_START,
            end=end,
            fx=FX,
        )

    assert raised.value.field_errors == {
        "travellers": [
            "travellers[1].age 90 is outside the insurable ages (0 to 84)",
            "travellers[2].age 101 is outside the insurable ages (0 to 84)",
        ]
    }
    assert raised.value.errors == raised.value.field_errors
    assert isinstance(raised.value, ValidationFailed)
    assert raised.value.status_code == 422


def test_travel_refuses_trips_longer_than_allowed() -> None:
    fields = {
        "policy_end_date": "2024-10-13T00:00:00Z",
        "destination_country": "US",
        "travellers": [{"age": 30}],
    }

    with pytest.raises(RatingError) as raised:
        policy_end(TRAVEL, fields, TRAVEL_START)

    assert raised.value.field_errors == {
        "policy_end_date": ["The period of cover must not be longer than 180 days"]
    }


# ---------------------------------------------------------------------------------------------
# Parcel protection


def parcel(value: Any, destination: str) -> dict[str, Any]:
    return {
        "parcel_value": value,
        "carrier": "DHL",
        "destination_country": destination,
        "tracking_number": "JD014600006281230123",
    }


def test_parcel_abroad_in_gbp() -> None:
    rating = price(PARCEL, parcel(120, "US"), "GBP", "GB")

    # 1.5% of £120 = £1.80 x 1.2 (destination not listed) = £2.16; IPT 12% = £0.2592.
    assert_amounts(rating, "2.16", [("IPT", "0.26")], "2.42")
    assert str(rating.partner_commission) == "0.32"
    assert str(rating.cover_amount) == "120.00"
    assert rating.benefits[1]["excess"] == d("5.00")


def test_parcel_in_naira_hits_the_minimum() -> None:
    rating = price(PARCEL, parcel(50000, "NG"), "NGN", "NG")

    # 1.5% of ₦50,000 = ₦750 x 1.5 = ₦1,125, below £1.50 = ₦3,075; VAT 7.5% = ₦230.625.
    assert_amounts(rating, "3075.00", [("VAT", "230.63")], "3305.63")
    assert str(rating.partner_commission) == "461.25"
    assert str(rating.cover_amount) == "50000.00"


def test_parcel_maximum_premium() -> None:
    rating = price(PARCEL, parcel(40000, "GB"), "GBP", "GB")

    # 1.5% of £40,000 = £600, capped at £500; IPT 12% = £60.
    assert_amounts(rating, "500.00", [("IPT", "60.00")], "560.00")


def test_parcel_decimal_values_stay_exact() -> None:
    rating = price(PARCEL, parcel(100.1, "GB"), "GBP", "US")

    # 1.5% of £100.10 = £1.5015 (not 1.5014999... from a binary float). No US taxes.
    assert_amounts(rating, "1.50", [], "1.50")
    assert str(rating.total_tax) == "0.00"
    assert str(rating.cover_amount) == "100.10"


def test_parcel_ends_thirty_days_later() -> None:
    start = datetime(2024, 2, 15, 9, 30, tzinfo=timezone(timedelta(hours=1)))

    end = policy_end(PARCEL, parcel(10, "GB"), start)

    assert end.isoformat() == "2024-03-16T09:30:00+01:00"


# ---------------------------------------------------------------------------------------------
# Gadget cover


def gadget(device_type: str, value: Any) -> dict[str, Any]:
    return {
        "device_type": device_type,
        "device_make": "Apple",
        "device_model": "iPhone 15",
        "device_value": value,
    }


def test_gadget_phone_in_euros() -> None:
    rating = price(GADGET, gadget("phone", 899.99), "EUR", "DE")

    # 1% of €899.99 = €8.9999 x 1.5 = €13.49985; default premium tax 5% of €13.50 = €0.675.
    assert_amounts(rating, "13.50", [("Premium tax", "0.68")], "14.18")
    assert str(rating.partner_commission) == "3.38"
    assert str(rating.cover_amount) == "899.99"


def test_gadget_wearable_in_yen() -> None:
    rating = price(GADGET, gadget("wearable", 40000), "JPY", "JP")

    # 1% of ¥40,000 = ¥400 x 2 = ¥800; 5% = ¥40; commission 25% = ¥200.
    assert_amounts(rating, "800", [("Premium tax", "40")], "840")
    assert str(rating.partner_commission) == "200"
    assert rating.benefits[3]["limit"] == d("28500")


def test_gadget_laptop_in_dinar_hits_the_minimum() -> None:
    rating = price(GADGET, gadget("laptop", 123.457), "BHD", "BH")

    # 1% of BD123.457 = BD1.23457, below £3 = BD1.437; 5% = BD0.07185; 25% = BD0.35925.
    assert_amounts(rating, "1.437", [("Premium tax", "0.072")], "1.509")
    assert str(rating.partner_commission) == "0.359"


def test_gadget_is_monthly_and_keeps_month_ends() -> None:
    plus_one = timezone(timedelta(hours=1))
    leap = datetime(2024, 1, 31, 10, 0, tzinfo=plus_one)
    common = datetime(2023, 1, 31, 10, 0, tzinfo=plus_one)

    assert policy_end(GADGET, gadget("phone", 100), leap).isoformat() == (
        "2024-02-29T10:00:00+01:00"
    )
    assert policy_end(GADGET, gadget("phone", 100), common).isoformat() == (
        "2023-02-28T10:00:00+01:00"
    )


def test_rate_refuses_a_currency_not_sold() -> None:
    fields = gadget("phone", 100)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = policy_end(GADGET, fields, start)

    with pytest.raises(RatingError) as raised:
        rate(GADGET, fields, currency="CHF", customer_country="CH", start=start, end=end, fx=FX)

    assert raised.value.field_errors == {
        "currency": [
            "Gadget Cover is not sold in CHF; use one of GBP, USD, EUR, AUD, NGN, JPY, BHD"
        ]
    }


def test_rate_reports_missing_fields_instead_of_failing() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=30)

    with pytest.raises(RatingError) as raised:
        rate(GADGET, {}, currency="GBP", customer_country="GB", start=start, end=end, fx=FX)

    assert raised.value.field_errors == {
        "device_value": ["device_value is required"],
        "device_type": ["device_type must be one of: phone, tablet, laptop, wearable"],
    }


def test_country_factor_without_default_refuses_unlisted_countries() -> None:
    data = CATALOG.model_dump(mode="json")
    parcel_data = next(p for p in data["products"] if p["policy_type"] == "parcel_protection")
    parcel_data["pricing"][1]["default"] = None
    strict = parse_catalog(data).find_product("parcel_protection")
    assert strict is not None
    start = datetime(2024, 1, 1, tzinfo=UTC)

    with pytest.raises(RatingError) as raised:
        rate(
            strict,
            parcel(100, "FR"),
            currency="GBP",
            customer_country="GB",
            start=start,
            end=start + timedelta(days=30),
            fx=FX,
        )

    assert raised.value.field_errors == {
        "destination_country": ["Parcel Protection is not available for FR"]
    }


# ---------------------------------------------------------------------------------------------
# Field validation


def test_valid_fields_give_no_errors() -> None:
    assert validate_fields(EVENT, RECORDED_EVENT) == {}
    assert validate_fields(PARCEL, parcel(10.5, "NG")) == {}
    assert validate_fields(GADGET, gadget("tablet", 300)) == {}


def test_common_request_keys_are_not_product_fields() -> None:
    fields = {
        **RECORDED_EVENT,
        "policy_type": "event_ticket_protection",
        "policy_type_version": 1,
        "policy_start_date": "2021-10-01T00:29:29Z",
    }

    assert validate_fields(EVENT, fields) == {}


def test_unknown_field_is_unexpected() -> None:
    errors = validate_fields(EVENT, {**RECORDED_EVENT, "policy_version": "unknown"})

    assert errors == {"policy_version": "Unexpected field"}


def test_negative_ticket_price() -> None:
    errors = validate_fields(EVENT, {**RECORDED_EVENT, "tickets": [{"price": -1}]})

    assert errors == {"tickets": ["tickets[0].price must be greater than or equal to 0"]}


def test_wrong_types() -> None:
    fields = {
        **RECORDED_EVENT,
        "number_of_tickets": "2",
        "resale_ticket": "no",
        "tickets": [{"price": "100"}, {"price": True}, {"price": float("nan")}],
    }

    assert validate_fields(EVENT, fields) == {
        "number_of_tickets": ["number_of_tickets must be an integer"],
        "tickets": [
            "tickets[0].price must be a number",
            "tickets[1].price must be a number",
            "tickets[2].price must be a number",
        ],
        "resale_ticket": ["resale_ticket must be a boolean"],
    }


def test_booleans_are_not_integers() -> None:
    errors = validate_fields(EVENT, {**RECORDED_EVENT, "number_of_tickets": True})

    assert errors == {"number_of_tickets": ["number_of_tickets must be an integer"]}


def test_missing_and_nested_unknown_fields() -> None:
    fields = {**RECORDED_EVENT, "tickets": [{"price": 10, "seat": "A1"}, {}]}
    del fields["event_name"]

    assert validate_fields(EVENT, fields) == {
        "event_name": ["event_name is required"],
        "tickets": ["tickets[0].seat is not an allowed field", "tickets[1].price is required"],
    }


def test_bounds_formats_and_enums() -> None:
    event = {
        **RECORDED_EVENT,
        "number_of_tickets": 0,
        "tickets": [],
        "event_datetime": "2021-10-10 13:44",
        "event_country": "UK",
        "event_name": "",
    }
    assert validate_fields(EVENT, event) == {
        "event_datetime": [
            "event_datetime must be an RFC 3339 date-time with a time zone offset, "
            "e.g. 2021-10-10T13:44:15Z"
        ],
        "event_name": ["event_name must be at least 1 character long"],
        "number_of_tickets": ["number_of_tickets must be greater than or equal to 1"],
        "tickets": ["tickets must contain at least 1 item"],
        "event_country": ["event_country must be an ISO 3166-1 alpha-2 country code, e.g. GB"],
    }
    assert validate_fields(GADGET, gadget("drone", 0)) == {
        "device_type": ["device_type must be one of: phone, tablet, laptop, wearable"],
        "device_value": ["device_value must be greater than 0"],
    }


def test_date_time_needs_an_offset() -> None:
    naive = {**RECORDED_EVENT, "event_datetime": "2021-10-10T13:44:15"}
    offset = {**RECORDED_EVENT, "event_datetime": "2021-10-10T13:44:15.5+01:00"}
    lower = {**RECORDED_EVENT, "event_datetime": "2021-10-10t13:44:15z"}

    assert list(validate_fields(EVENT, naive)) == ["event_datetime"]
    assert validate_fields(EVENT, offset) == {}
    assert validate_fields(EVENT, lower) == {}


# ---------------------------------------------------------------------------------------------
# Period of cover


def test_end_field_keeps_the_offset_sent() -> None:
    start = datetime.fromisoformat("2018-01-01T09:00:00+01:00")
    fields = {**RECORDED_EVENT, "event_datetime": "2018-01-01T17:00:00+01:00"}

    end = policy_end(EVENT, fields, start)

    assert end.isoformat() == "2018-01-01T17:00:00+01:00"
    assert end.utcoffset() == timedelta(hours=1)


def test_end_field_z_is_utc() -> None:
    end = policy_end(EVENT, RECORDED_EVENT, RECORDED_START)

    assert end.isoformat() == "2021-10-10T13:44:15+00:00"


def test_end_before_start_is_refused() -> None:
    fields = {**RECORDED_EVENT, "event_datetime": "2021-09-30T12:00:00Z"}

    with pytest.raises(RatingError) as raised:
        policy_end(EVENT, fields, RECORDED_START)

    assert raised.value.field_errors == {
        "event_datetime": ["event_datetime must be after policy_start_date"]
    }


def test_end_compares_instants_across_offsets() -> None:
    # 10:00+01:00 is 09:00Z, one hour before a 09:30Z start.
    fields = {**RECORDED_EVENT, "event_datetime": "2021-10-01T10:00:00+01:00"}
    start = datetime(2021, 10, 1, 9, 30, tzinfo=UTC)

    with pytest.raises(RatingError):
        policy_end(EVENT, fields, start)


def test_missing_or_malformed_end_field() -> None:
    missing = dict(RECORDED_EVENT)
    del missing["event_datetime"]
    with pytest.raises(RatingError) as raised:
        policy_end(EVENT, missing, RECORDED_START)
    assert raised.value.field_errors == {"event_datetime": ["event_datetime is required"]}

    with pytest.raises(RatingError) as raised:
        policy_end(EVENT, {**RECORDED_EVENT, "event_datetime": 20211010}, RECORDED_START)
    assert list(raised.value.field_errors) == ["event_datetime"]


def test_start_must_be_aware() -> None:
    with pytest.raises(RatingError) as raised:
        policy_end(GADGET, gadget("phone", 100), datetime(2024, 1, 1))

    assert raised.value.field_errors == {
        "policy_start_date": ["policy_start_date must include a time zone offset"]
    }


def test_cover_days() -> None:
    start = datetime(2023, 10, 8, tzinfo=UTC)

    assert cover_days(start, start + timedelta(days=5)) == 5
    assert cover_days(start, start + timedelta(days=5, microseconds=1)) == 6
    assert cover_days(start, start + timedelta(hours=1)) == 1
