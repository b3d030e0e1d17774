import copy
import json
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from coverline.catalog.definition import (
    DEMO_CATALOG_PATH,
    AgeBandFactorRule,
    CatalogError,
    FixedTax,
    PercentageRule,
    PercentageTax,
    load_catalog_file,
    parse_catalog,
    parse_duration,
    render_text,
)
from coverline.catalog.rating import validate_fields


def minimal_product(**overrides: Any) -> dict[str, Any]:
    product: dict[str, Any] = {
        "policy_type": "bike_cover",
        "policy_name": "Bike Cover",
        "policy_code": "BIKE0001",
        "category": "bike_cover",
        "group_name": "sport",
        "content": {"title": "Bike Cover for your {bike_make}"},
        "underwriter": {"name": "Demo Underwriter"},
        "fields_schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["bike_make", "bike_value"],
            "properties": {
                "bike_make": {"type": "string"},
                "bike_value": {"type": "number", "minimum": 0},
            },
        },
        "base_currency": "GBP",
        "currencies": ["GBP"],
        "period": {"duration": "P1Y"},
        "pricing": [{"kind": "percentage", "rate": "5", "of": {"field": "bike_value"}}],
    }
    product.update(overrides)
    return product


def document(*products: dict[str, Any], fx: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"products": list(products)}
    if fx is not None:
        data["fx"] = fx
    return data


def catalog_error(data: Any) -> str:
    with pytest.raises(CatalogError) as raised:
        parse_catalog(data)
    return str(raised.value)


def test_demo_catalogue_parses() -> None:
    catalog = load_catalog_file(DEMO_CATALOG_PATH)

    assert [p.policy_type for p in catalog.products] == [
        "event_ticket_protection",
        "travel_medical",
        "parcel_protection",
        "gadget_cover",
    ]
    assert catalog.fx is not None
    assert catalog.fx.base == "GBP"
    assert catalog.fx.rates["AUD"] == Decimal("1.8685")
    for product in catalog.products:
        assert {"GBP", "USD", "EUR", "AUD", "NGN"} <= set(product.currencies)
        assert {"GB", "NG", "AU", "US", "default"} <= set(product.taxes)

    event = catalog.find_product("event_ticket_protection", 1)
    assert event is not None
    assert event.period.end_field == "event_datetime"
    assert event.base_currency == "AUD"
    pricing = event.pricing[0]
    assert isinstance(pricing, PercentageRule)
    assert pricing.rate == Decimal("0.45")
    gb_taxes = event.taxes["GB"]
    assert isinstance(gb_taxes[0], FixedTax)
    assert (gb_taxes[0].tax_code, gb_taxes[0].amount, gb_taxes[0].currency) == (
        "Admin. fee",
        Decimal("1.00"),
        "GBP",
    )
    assert isinstance(gb_taxes[1], PercentageTax)
    assert (gb_taxes[1].tax_code, gb_taxes[1].rate) == ("IPT", Decimal(12))
    assert not event.is_renewable

    travel = catalog.find_product("travel_medical")
    assert travel is not None
    assert travel.period.end_field == "policy_end_date"
    assert isinstance(travel.pricing[1], AgeBandFactorRule)
    assert travel.renewal is None

    gadget = catalog.find_product("gadget_cover")
    assert gadget is not None
    assert gadget.is_renewable
    assert gadget.renewal is not None
    assert (gadget.renewal.period, gadget.renewal.notification_days) == ("P1M", 7)
    assert gadget.renewal.grace_days == 14
    assert gadget.cancellation.cooling_off_days == 14
    assert gadget.period.duration == "P1M"

    assert catalog.find_product("gadget_cover", 2) is None


def test_yaml_numbers_are_exact_decimals() -> None:
    catalog = load_catalog_file(DEMO_CATALOG_PATH)
    travel = catalog.find_product("travel_medical")
    assert travel is not None
    assert travel.pricing[0].amount == Decimal("1.20")  # type: ignore[union-attr]
    assert str(travel.pricing[0].amount) == "1.20"  # type: ignore[union-attr]


def test_json_catalogue_loads_the_same(tmp_path: Path) -> None:
    yaml_catalog = load_catalog_file(DEMO_CATALOG_PATH)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(yaml_catalog.model_dump(mode="json")), encoding="utf-8")

    json_catalog = load_catalog_file(path)

    assert json_catalog.model_dump() == yaml_catalog.model_dump()


def test_json_numbers_are_read_as_decimals(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    product = minimal_product()
    product["pricing"][0]["rate"] = 0.1
    path.write_text(json.dumps(document(product)), encoding="utf-8")

    rule = load_catalog_file(path).products[0].pricing[0]

    assert isinstance(rule, PercentageRule)
    assert str(rule.rate) == "0.1"


def test_minimal_product_defaults() -> None:
    product = parse_catalog(document(minimal_product())).products[0]

    assert product.policy_type_version == 1
    assert product.taxes == {}
    assert product.commission.rate == 0
    assert product.benefits == []
    assert product.cancellation.cooling_off_days == 0
    assert product.cancellation.refund == "pro_rata"
    assert product.instalments is None


def test_instalments_and_adjustment_fee_are_kept() -> None:
    product = minimal_product(
        instalments={"count": 12},
        cancellation={
            "cooling_off_days": 14,
            "adjustment_fee": {"kind": "flat", "amount": "7.50"},
            "refund": "pro_rata",
        },
    )

    parsed = parse_catalog(document(product)).products[0]

    assert parsed.instalments is not None
    assert parsed.instalments.count == 12
    assert parsed.cancellation.adjustment_fee is not None
    assert parsed.cancellation.adjustment_fee.kind == "flat"


def test_invalid_json_schema_is_refused() -> None:
    schema = {"type": "objekt", "additionalProperties": False, "properties": {}}

    message = catalog_error(document(minimal_product(fields_schema=schema)))

    assert "products[0] (bike_cover).fields_schema" in message
    assert "fields_schema is not a valid JSON Schema" in message
    assert "'objekt' is not valid" in message


def test_schema_must_refuse_unknown_fields() -> None:
    product = minimal_product()
    del product["fields_schema"]["additionalProperties"]

    message = catalog_error(document(product))

    assert 'fields_schema must have "additionalProperties": false' in message


def test_schema_must_not_redefine_common_fields() -> None:
    product = minimal_product()
    product["fields_schema"]["properties"]["policy_start_date"] = {"type": "string"}

    message = catalog_error(document(product))

    assert "must not define the common request fields ['policy_start_date']" in message


def test_unknown_currency_is_refused() -> None:
    message = catalog_error(document(minimal_product(currencies=["GBP", "XYZ"])))

    assert "products[0] (bike_cover).currencies[1]" in message
    assert "'XYZ' is not an ISO 4217 currency code" in message


def test_sold_currency_needs_an_exchange_rate() -> None:
    product = minimal_product(currencies=["GBP", "CHF"])
    fx = {"base": "GBP", "rates": {"USD": "1.27"}}

    message = catalog_error(document(product, fx=fx))

    assert "products[0] (bike_cover): no exchange rate for CHF in the fx table" in message


def test_several_currencies_without_fx_table_are_refused() -> None:
    message = catalog_error(document(minimal_product(currencies=["GBP", "USD"])))

    assert "no exchange rate for GBP, USD" in message


def test_fixed_tax_currency_needs_an_exchange_rate() -> None:
    taxes = {"GB": [{"tax_code": "Fee", "kind": "fixed", "amount": "1", "currency": "EUR"}]}

    message = catalog_error(document(minimal_product(taxes=taxes)))

    assert "no exchange rate for EUR, GBP" in message


def test_unknown_pricing_rule_is_refused() -> None:
    product = minimal_product(pricing=[{"kind": "bogus", "amount": "1"}])

    message = catalog_error(document(product))

    assert "products[0] (bike_cover).pricing[0]" in message
    assert "'bogus'" in message
    assert "'flat'" in message


def test_pricing_needs_an_additive_rule() -> None:
    product = minimal_product(pricing=[{"kind": "minimum_premium", "amount": "5"}])

    message = catalog_error(document(product))

    assert "pricing needs at least one flat, per_day, per_unit or percentage rule" in message


def test_pricing_must_read_defined_fields() -> None:
    product = minimal_product(
        pricing=[{"kind": "percentage", "rate": "5", "of": {"field": "frame_value"}}]
    )

    message = catalog_error(document(product))

    assert "pricing[0] reads frame_value, which fields_schema does not define" in message


def test_title_placeholders_must_be_fields() -> None:
    product = minimal_product(content={"title": "Cover for {rider_name}"})

    message = catalog_error(document(product))

    assert "content.title reads rider_name, which fields_schema does not define" in message


def test_end_field_must_be_a_required_date_time() -> None:
    product = minimal_product(period={"end_field": "bike_make"})

    message = catalog_error(document(product))

    assert 'period.end_field bike_make must have "format": "date-time"' in message


def test_bad_duration_is_refused() -> None:
    message = catalog_error(document(minimal_product(period={"duration": "P1X"})))

    assert "'P1X' is not an ISO 8601 duration" in message


def test_unknown_keys_are_refused() -> None:
    message = catalog_error(document(minimal_product(colour="red")))

    assert "products[0] (bike_cover).colour: Extra inputs are not permitted" in message


def test_tax_table_keys_are_countries() -> None:
    taxes = {"XX": [{"tax_code": "VAT", "kind": "percentage", "rate": "20"}]}

    message = catalog_error(document(minimal_product(taxes=taxes)))

    assert "tax table key 'XX' is neither 'default' nor an ISO 3166-1 alpha-2 code" in message


def test_overlapping_age_bands_are_refused() -> None:
    product = minimal_product()
    product["fields_schema"]["properties"]["riders"] = {
        "type": "array",
        "items": {"type": "object", "properties": {"age": {"type": "integer"}}},
    }
    product["pricing"].append(
        {
            "kind": "age_band_factor",
            "ages": "riders[].age",
            "bands": [
                {"min_age": 0, "max_age": 30, "factor": "1"},
                {"min_age": 30, "max_age": 60, "factor": "2"},
            ],
        }
    )

    message = catalog_error(document(product))

    assert "age bands 0-30 and 30-60 overlap" in message


def test_duplicate_products_are_refused() -> None:
    message = catalog_error(document(minimal_product(), minimal_product()))

    assert "bike_cover version 1 is defined twice" in message


def test_negative_amounts_are_refused() -> None:
    product = minimal_product(pricing=[{"kind": "flat", "amount": "-1"}])

    message = catalog_error(document(product))

    assert "pricing[0].flat.amount: Input should be greater than or equal to 0" in message


def test_fx_base_must_not_be_in_rates() -> None:
    fx = {"base": "GBP", "rates": {"GBP": "1", "USD": "1.27"}}

    message = catalog_error(document(minimal_product(), fx=fx))

    assert "fx.rates must not list the base currency GBP" in message


def test_document_must_be_a_mapping() -> None:
    message = catalog_error(["not", "a", "catalogue"])

    assert message.startswith("invalid catalogue: (document): Input should be")


def test_yaml_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("products: []\nproducts: []\n", encoding="utf-8")

    with pytest.raises(CatalogError, match="duplicate key 'products'"):
        load_catalog_file(path)


def test_yaml_infinity_is_refused(tmp_path: Path) -> None:
    product = copy.deepcopy(minimal_product())
    path = tmp_path / "catalog.yaml"
    text = json.dumps(document(product)).replace('"rate": "5"', '"rate": .inf')
    path.write_text(text, encoding="utf-8")

    with pytest.raises(CatalogError, match="numbers must be finite"):
        load_catalog_file(path)


def test_unreadable_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalogue"):
        load_catalog_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(CatalogError, match="cannot parse catalogue"):
        load_catalog_file(broken)
    # What YAML and JSON can hold but a catalogue cannot: a CatalogError, never a crash.
    for name, text, reason in (
        ("complex.yaml", "? [1, 2]\n: x\n", "a key must be a string or a number"),
        ("deep.yaml", "[" * 3000 + "]" * 3000, "nested too deeply"),
        ("deep.json", "[" * 100000 + "]" * 100000, "nested too deeply"),
    ):
        odd = tmp_path / name
        odd.write_text(text, encoding="utf-8")
        with pytest.raises(CatalogError, match=reason):
            load_catalog_file(odd)


def test_parse_duration() -> None:
    from datetime import datetime

    start = datetime(2024, 1, 31, tzinfo=UTC)
    assert start + parse_duration("P1M") == datetime(2024, 2, 29, tzinfo=UTC)
    assert start + parse_duration("P30D") == datetime(2024, 3, 1, tzinfo=UTC)
    assert start + parse_duration("P1Y") == datetime(2025, 1, 31, tzinfo=UTC)
    assert start + parse_duration("PT12H") == datetime(2024, 1, 31, 12, tzinfo=UTC)
    for bad in ("P", "PT", "P0D", "1M", "P1.5D", "P1DT"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_render_text_only_fills_top_level_scalars() -> None:
    fields = {"event_name": "Ariana Grande", "seats": 2, "flag": True, "tickets": [{"p": 1}]}

    assert render_text("Cover for {event_name}", fields) == "Cover for Ariana Grande"
    assert render_text("{seats} seats", fields) == "2 seats"
    assert render_text("[{flag}] [{tickets}] [{missing}]", fields) == "[] [] []"
    assert render_text("{event_name.__class__} {0} {event_name!r}", fields) == (
        "{event_name.__class__} {0} {event_name!r}"
    )


def test_a_fields_schema_refers_only_within_itself() -> None:
    """A `$ref` points into the schema, at something there: nothing is fetched when a quote
    is checked, and no quote meets a reference to nothing."""

    def with_bike_make(schema: dict[str, Any]) -> dict[str, Any]:
        product = minimal_product()
        product["fields_schema"]["properties"]["bike_make"] = schema
        product["fields_schema"]["$defs"] = {"make": {"type": "string", "maxLength": 40}}
        return product

    accepted = parse_catalog(document(with_bike_make({"$ref": "#/$defs/make"})))
    definition = accepted.products[0]
    assert validate_fields(definition, {"bike_make": "x" * 41, "bike_value": 1}) == {
        "bike_make": ["bike_make must be at most 40 characters long"]
    }
    for ref, message in (
        ("http://127.0.0.1:1/make.json", "fields_schema may refer only within itself"),
        ("other.json#/make", "fields_schema may refer only within itself"),
        ("#/$defs/nothere", "fields_schema refers to nothing at '#/$defs/nothere'"),
    ):
        assert message in catalog_error(document(with_bike_make({"$ref": ref}))), ref


def test_a_product_is_renewable_or_paid_by_instalments_not_both() -> None:
    product = minimal_product(
        period={"duration": "P1M"},
        renewal={"period": "P1M", "notification_days": 7, "grace_days": 14},
        instalments={"count": 12},
    )
    assert "a product is renewable or paid by instalments, not both" in catalog_error(
        document(product)
    )


def test_aliases_and_duplicate_json_keys_are_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "aliases.yaml"
    bomb.write_text("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"aliases \(\*name\) are not accepted"):
        load_catalog_file(bomb)
    twice = tmp_path / "twice.json"
    twice.write_text('{"products": [], "products": []}', encoding="utf-8")
    with pytest.raises(CatalogError, match="duplicate key 'products'"):
        load_catalog_file(twice)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"^(a)\1$", "invalid escape sequence: \\1"),
        ("^(?=a)b", "invalid perl operator: (?="),
        ("^(?<!a)b", "invalid perl operator: (?<!"),
        ("((a{100}){100}){100}", "invalid repetition size: {100}"),
    ],
)
def test_a_pattern_that_needs_backtracking_is_refused(pattern: str, reason: str) -> None:
    product = minimal_product()
    product["fields_schema"]["properties"]["bike_make"]["pattern"] = pattern

    message = catalog_error(document(product))

    assert (
        f"fields_schema has the pattern {pattern!r}, which is not one RE2 matches ({reason}): "
        "patterns are matched in linear time, with no backreferences or lookaround"
    ) in message


def test_pattern_properties_are_refused() -> None:
    product = minimal_product()
    product["fields_schema"]["properties"]["extras"] = {
        "type": "object",
        "patternProperties": {"^x$": {"type": "string"}},
    }

    message = catalog_error(document(product))

    assert "fields_schema must not use patternProperties: name each field under properties" in (
        message
    )


def test_patterns_match_in_time_linear_in_the_text() -> None:
    """`^(a+)+$` backtracks exponentially in Python's `re` (28 characters took 17 s, holding
    the event loop); RE2 answers for 100,000 at once, in a field and in a property name."""
    product = minimal_product()
    properties = product["fields_schema"]["properties"]
    properties["bike_make"]["pattern"] = "^(a+)+$"
    properties["extras"] = {"type": "object", "propertyNames": {"pattern": "^(x+)+$"}}
    (definition,) = parse_catalog(document(product)).products
    long = "a" * 100_000
    assert validate_fields(definition, {"bike_value": 1, "bike_make": long}) == {}
    assert validate_fields(definition, {"bike_value": 1, "bike_make": long + "!"}) == {
        "bike_make": ["bike_make must match the pattern ^(a+)+$"]
    }
    fields = {"bike_value": 1, "bike_make": "a", "extras": {"x" * 100_000 + "!": 1}}
    assert list(validate_fields(definition, fields)) == ["extras"]
    fields["extras"] = {"x" * 100_000: 1}
    assert validate_fields(definition, fields) == {}


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ({"policy_type": "p" * 65}, "policy_type: String should have at most 64 characters"),
        ({"policy_name": "n" * 201}, "policy_name: String should have at most 200 characters"),
        (
            {"policy_type_version": 2**31},
            "policy_type_version: Input should be less than or equal to 2147483647",
        ),
        (
            {"policy_type_version": 10**20},
            "policy_type_version: Input should be less than or equal to 2147483647",
        ),
    ],
)
def test_names_and_versions_fit_the_catalogue_table(override: dict[str, Any], problem: str) -> None:
    """What the products table cannot hold is a catalogue error on either database (it was a
    500 on PostgreSQL, or stored on SQLite)."""
    assert problem in catalog_error(document(minimal_product(**override)))
