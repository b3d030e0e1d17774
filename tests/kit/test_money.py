from decimal import Decimal

import pytest

from coverline.kit.money import (
    format_money,
    from_minor,
    is_currency,
    json_number,
    minor_units,
    quantize,
    to_minor,
)


@pytest.mark.parametrize(
    ("currency", "units"),
    [("GBP", 2), ("USD", 2), ("NGN", 2), ("JPY", 0), ("BHD", 3), ("KWD", 3), ("EUR", 2)],
)
def test_minor_units(currency: str, units: int) -> None:
    assert minor_units(currency) == units


def test_minor_units_refuses_unknown_currency() -> None:
    with pytest.raises(ValueError, match="unknown currency 'XYZ'"):
        minor_units("XYZ")


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("2.01", "GBP", "£2.01"),
        ("68.71", "USD", "US$68.71"),
        ("2.75", "AUD", "A$2.75"),
        ("5000", "NGN", "₦5,000.00"),
        ("10", "EUR", "€10.00"),
        ("1234.5", "JPY", "JP¥1,235"),
        ("1.2345", "BHD", "BHD1.235"),
        ("0.005", "GBP", "£0.01"),
        ("1234567.891", "GBP", "£1,234,567.89"),
    ],
)
def test_format_money(amount: str, currency: str, expected: str) -> None:
    assert format_money(Decimal(amount), currency) == expected


def test_format_money_other_locales() -> None:
    assert format_money(Decimal("5000"), "NGN", "en-us") == "₦5,000.00"
    assert format_money(Decimal("68.71"), "USD", "en_US") == "$68.71"
    assert format_money(Decimal("2.01"), "GBP", "xx-yy") == "£2.01"


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("1.005", "GBP", "1.01"),
        ("1.004", "GBP", "1.00"),
        ("2.675", "GBP", "2.68"),
        ("-1.005", "GBP", "-1.01"),
        ("1234.5", "JPY", "1235"),
        ("1233.5", "JPY", "1234"),
        ("0.4", "JPY", "0"),
        ("1.2345", "BHD", "1.235"),
        ("1.2344", "BHD", "1.234"),
        ("7", "BHD", "7.000"),
        ("-0.001", "GBP", "0.00"),
    ],
)
def test_quantize_half_up(amount: str, currency: str, expected: str) -> None:
    result = quantize(Decimal(amount), currency)
    assert str(result) == expected
    assert result.as_tuple().exponent == -minor_units(currency)


def test_quantize_never_gives_negative_zero() -> None:
    assert quantize(Decimal("-0.004"), "GBP").is_signed() is False


def test_minor_unit_round_trip() -> None:
    assert to_minor(Decimal("2.01"), "GBP") == 201
    assert to_minor(Decimal("2.005"), "GBP") == 201
    assert to_minor(Decimal("1235"), "JPY") == 1235
    assert to_minor(Decimal("1.2345"), "BHD") == 1235
    assert str(from_minor(201, "GBP")) == "2.01"
    assert str(from_minor(0, "GBP")) == "0.00"
    assert str(from_minor(1235, "JPY")) == "1235"
    assert str(from_minor(1235, "BHD")) == "1.235"
    assert str(from_minor(-50, "USD")) == "-0.50"


def test_json_number() -> None:
    assert json_number(Decimal("2.01")) == 2.01
    assert isinstance(json_number(Decimal("1.00")), float)
    assert repr(json_number(Decimal("1.00"))) == "1.0"
    assert repr(json_number(Decimal("0.00"))) == "0.0"
    assert repr(json_number(Decimal("10.70"))) == "10.7"
    assert json_number(Decimal("1235")) == 1235
    assert isinstance(json_number(Decimal("1235")), int)


def test_is_currency() -> None:
    assert is_currency("GBP")
    assert is_currency("NGN")
    assert not is_currency("gbp")
    assert not is_currency("XYZ")
    assert not is_currency("GB")
    assert not is_currency("")
