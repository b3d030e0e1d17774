"""Rating: request fields in, price out.

`validate_fields` checks a quote request's product fields against the product's JSON
Schema, `policy_end` works out the end of cover, `rate` prices it: premium, taxes,
commission, cover amount and benefits, every amount quantized to the quote currency.

All arithmetic is `Decimal`. Intermediate values keep full precision; each published amount
is rounded once, half-up, so that `price == premium + sum(taxes)` holds exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from typing import Any

from jsonschema import ValidationError

from coverline.catalog.definition import (
    COMMON_REQUEST_FIELDS,
    AgeBandFactorRule,
    CountryFactorRule,
    FieldFactorRule,
    FixedTax,
    FlatRule,
    FxDefinition,
    MaximumPremiumRule,
    MinimumPremiumRule,
    PercentageRule,
    PerDayRule,
    PerUnitRule,
    ProductDefinition,
    UnitSource,
    ValueSource,
    parse_rfc3339,
    split_item_path,
)
from coverline.kit.errors import NON_FIELD_ERRORS, ValidationFailed
from coverline.kit.money import quantize

UNEXPECTED_FIELD = "Unexpected field"

# Generous precision: products of a few request values and rates never round here.
_ARITHMETIC = Context(prec=60)
# No cover ends later: a far-future start gets a clear error, never a date past year 9999.
LATEST_END = datetime(9000, 1, 1, tzinfo=UTC)


class RatingError(ValidationFailed):
    """The product cannot be priced for this input; `errors` maps fields to messages."""

    default_message = "The product cannot be priced for this request."

    def __init__(self, errors: dict[str, list[str]], message: str | None = None) -> None:
        super().__init__(message, errors)
        self.field_errors = errors


# ---------------------------------------------------------------------------------------------
# Exchange rates


class FxTable:
    """Exchange rates against one base currency; other pairs cross through the base."""

    def __init__(self, base: str | None, rates: Mapping[str, Decimal]) -> None:
        self.base = base
        self._rates: dict[str, Decimal] = dict(rates)
        if base is not None:
            self._rates[base] = Decimal(1)

    @classmethod
    def from_definition(cls, fx: FxDefinition | None) -> FxTable:
        if fx is None:
            return cls(None, {})
        return cls(fx.base, fx.rates)

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self._rates)

    def convert(self, amount: Decimal, from_currency: str, to_currency: str) -> Decimal:
        """`amount` in `to_currency`, unrounded (one division at 60 significant digits)."""
        if from_currency == to_currency:
            return amount
        try:
            from_rate = self._rates[from_currency]
            to_rate = self._rates[to_currency]
        except KeyError:
            raise RatingError(
                {"currency": [f"No exchange rate from {from_currency} to {to_currency}."]}
            ) from None
        with localcontext(_ARITHMETIC):
            return amount * to_rate / from_rate


# ---------------------------------------------------------------------------------------------
# Field validation


def _render_path(parts: Iterator[str | int] | list[str | int]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
    "null": "null",
}

_FORMAT_MESSAGES = {
    "date-time": "must be an RFC 3339 date-time with a time zone offset, e.g. 2021-10-10T13:44:15Z",
    "date": "must be a date in the form YYYY-MM-DD",
    "country": "must be an ISO 3166-1 alpha-2 country code, e.g. GB",
    "currency": "must be an ISO 4217 currency code, e.g. GBP",
    "email": "must be an e-mail address",
    "uuid": "must be a UUID",
}


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _requirement(error: ValidationError) -> str:
    """What the value must be, for one failed JSON Schema keyword."""
    keyword = error.validator
    expected: Any = error.validator_value
    if keyword == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        return "must be " + " or ".join(_TYPE_NAMES.get(name, name) for name in names)
    if keyword == "minimum":
        return f"must be greater than or equal to {_literal(expected)}"
    if keyword == "exclusiveMinimum":
        return f"must be greater than {_literal(expected)}"
    if keyword == "maximum":
        return f"must be less than or equal to {_literal(expected)}"
    if keyword == "exclusiveMaximum":
        return f"must be less than {_literal(expected)}"
    if keyword == "multipleOf":
        return f"must be a multiple of {_literal(expected)}"
    if keyword == "minLength":
        return f"must be at least {_plural(expected, 'character')} long"
    if keyword == "maxLength":
        return f"must be at most {_plural(expected, 'character')} long"
    if keyword == "minItems":
        return f"must contain at least {_plural(expected, 'item')}"
    if keyword == "maxItems":
        return f"must contain at most {_plural(expected, 'item')}"
    if keyword == "uniqueItems":
        return "must not contain duplicate items"
    if keyword == "enum":
        return "must be one of: " + ", ".join(_literal(value) for value in expected)
    if keyword == "const":
        return f"must be {_literal(expected)}"
    if keyword == "pattern":
        return f"must match the pattern {expected}"
    if keyword == "format":
        return _FORMAT_MESSAGES.get(expected, f"must be a valid {expected}")
    return "is not valid"


def _allowed(schema: Mapping[str, Any], key: str) -> bool:
    # Fields are named under properties (a catalogue has no patternProperties).
    return key in schema.get("properties", {})


def _describe(error: ValidationError) -> Iterator[tuple[str, str, bool]]:
    """(top-level field, message, is an unexpected top-level field) for one schema error."""
    path: list[str | int] = list(error.absolute_path)
    keyword = error.validator
    schema: Any = error.schema
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        for key in error.instance:
            if not _allowed(schema, key):
                if path:
                    yield (
                        str(path[0]),
                        f"{_render_path([*path, key])} is not an allowed field",
                        False,
                    )
                else:
                    yield key, UNEXPECTED_FIELD, True
        return
    if keyword == "required" and isinstance(error.instance, dict):
        required: Any = error.validator_value
        for key in required:
            if key not in error.instance:
                yield (
                    str(path[0]) if path else key,
                    f"{_render_path([*path, key])} is required",
                    False,
                )
        return
    if not path:
        yield NON_FIELD_ERRORS, f"The request {_requirement(error)}", False
        return
    yield str(path[0]), f"{_render_path(path)} {_requirement(error)}", False


def validate_fields(
    definition: ProductDefinition, fields: Mapping[str, Any]
) -> dict[str, str | list[str]]:
    """Errors in a quote request's product fields, keyed by top-level field; {} when valid.

    An unknown top-level field maps to the string "Unexpected field" (as XCover answers);
    any other problem to a list of messages. The common request keys (policy_type,
    policy_type_version, policy_start_date) are not product fields and are skipped.
    """
    product_fields = {k: v for k, v in fields.items() if k not in COMMON_REQUEST_FIELDS}
    errors: dict[str, str | list[str]] = {}
    for error in definition.fields_validator.iter_errors(product_fields):
        for field, message, unexpected in _describe(error):
            if unexpected:
                errors[field] = UNEXPECTED_FIELD
                continue
            messages = errors.setdefault(field, [])
            if isinstance(messages, list) and message not in messages:
                messages.append(message)
    return errors


# ---------------------------------------------------------------------------------------------
# Period of cover


def _aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() is not None


def policy_end(
    definition: ProductDefinition, fields: Mapping[str, Any], start: datetime
) -> datetime:
    """The end of cover, with the offset the partner sent (or the start's offset).

    Raises `RatingError` when the end field is missing or malformed, when the end is not
    after the start, or when the period is longer than the product allows.
    """
    if not _aware(start):
        raise RatingError(
            {"policy_start_date": ["policy_start_date must include a time zone offset"]}
        )
    period = definition.period
    delta = definition.period_delta
    if period.end_field is not None:
        name = period.end_field
        raw = fields.get(name)
        if raw is None:
            raise RatingError({name: [f"{name} is required"]})
        try:
            end = parse_rfc3339(raw) if isinstance(raw, str) else None
        except ValueError:
            end = None
        if end is None:
            raise RatingError({name: [f"{name} {_FORMAT_MESSAGES['date-time']}"]})
        if end <= start:
            raise RatingError({name: [f"{name} must be after policy_start_date"]})
    else:
        assert delta is not None  # a period has an end_field or a duration
        name = "policy_start_date"
        try:
            end = start + delta
        except (OverflowError, ValueError):  # past year 9999
            end = LATEST_END
    if end >= LATEST_END:
        # Renewals, notices and grace periods are counted from the end: room is left for them.
        raise RatingError({name: [f"{name} is too far in the future"]})
    if period.max_days is not None and end - start > timedelta(days=period.max_days):
        raise RatingError(
            {name: [f"The period of cover must not be longer than {period.max_days} days"]}
        )
    return end


def cover_days(start: datetime, end: datetime) -> int:
    """Days of cover, each started day counting as a whole day; at least one."""
    elapsed = end - start
    days = elapsed.days + (1 if elapsed.seconds or elapsed.microseconds else 0)
    return max(days, 1)


# ---------------------------------------------------------------------------------------------
# Pricing


@dataclass(frozen=True)
class TaxLine:
    tax_code: str
    amount: Decimal


@dataclass(frozen=True)
class Rating:
    """A priced quote. Every amount is quantized to `currency`.

    `benefits` are dicts in the recorded XCover order: `description`, `limit_description`,
    `limit` (quote currency), `limit_policy_currency` (the product's base currency),
    `excess`, `excess_policy_currency`, `excess_description`; keys whose value the product
    does not define are left out. Each also carries `policy_currency` (the base currency, for
    formatting the `*_policy_currency` amounts; not an XCover key).
    """

    currency: str
    policy_currency: str
    premium: Decimal
    taxes: tuple[TaxLine, ...]
    total_tax: Decimal
    price: Decimal
    partner_commission: Decimal
    total_commission: Decimal
    cover_amount: Decimal | None
    benefits: list[dict[str, Any]]


class _Problems:
    """Collects every reason a request cannot be priced, so the partner sees them all."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        messages = self.errors.setdefault(field, [])
        if message not in messages:
            messages.append(message)


def _decimal(value: Any) -> Decimal | None:
    """A request number as an exact decimal (`100.5` stays 100.5); None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    return None


def _non_negative(value: Any, where: str, problems: _Problems, field: str) -> Decimal:
    number = _decimal(value)
    if number is None:
        problems.add(field, f"{where} must be a number")
        return Decimal(0)
    if number < 0:
        problems.add(field, f"{where} must not be negative")
        return Decimal(0)
    return number


def _field_number(fields: Mapping[str, Any], name: str, problems: _Problems) -> Decimal:
    if fields.get(name) is None:
        problems.add(name, f"{name} is required")
        return Decimal(0)
    return _non_negative(fields[name], name, problems, name)


def _item_numbers(fields: Mapping[str, Any], path: str, problems: _Problems) -> list[Decimal]:
    array, item = split_item_path(path)
    values = fields.get(array)
    if not isinstance(values, list):
        problems.add(array, f"{array} is required")
        return []
    numbers = []
    for index, entry in enumerate(values):
        where = f"{array}[{index}].{item}"
        if not isinstance(entry, dict) or entry.get(item) is None:
            problems.add(array, f"{where} is required")
            continue
        numbers.append(_non_negative(entry[item], where, problems, array))
    return numbers


def _insured_value(source: ValueSource, fields: Mapping[str, Any], problems: _Problems) -> Decimal:
    if source.field is not None:
        value = _field_number(fields, source.field, problems)
    elif source.sum is not None:
        value = sum(_item_numbers(fields, source.sum, problems), Decimal(0))
    else:
        assert source.mean is not None  # a value source has exactly one of field/sum/mean
        numbers = _item_numbers(fields, source.mean, problems)
        value = sum(numbers, Decimal(0)) / len(numbers) if numbers else Decimal(0)
    if source.times is not None:
        value *= _field_number(fields, source.times, problems)
    return value


def _units(source: UnitSource, fields: Mapping[str, Any], problems: _Problems) -> Decimal:
    if source.count is not None:
        values = fields.get(source.count)
        if not isinstance(values, list):
            problems.add(source.count, f"{source.count} is required")
            return Decimal(0)
        return Decimal(len(values))
    return _field_number(fields, source.name, problems)


def _age_factor(rule: AgeBandFactorRule, fields: Mapping[str, Any], problems: _Problems) -> Decimal:
    array, item = split_item_path(rule.ages)
    ages = _item_numbers(fields, rule.ages, problems)
    if not ages:
        return Decimal(1)
    youngest = min(band.min_age for band in rule.bands)
    oldest = max(band.max_age for band in rule.bands)
    factors = []
    for index, age in enumerate(ages):
        band = next((b for b in rule.bands if b.min_age <= age <= b.max_age), None)
        if band is None:
            problems.add(
                array,
                f"{array}[{index}].{item} {age} is outside the insurable ages "
                f"({youngest} to {oldest})",
            )
            continue
        factors.append(band.factor)
    return sum(factors, Decimal(0)) / len(factors) if factors else Decimal(1)


def _country_factor(
    rule: CountryFactorRule,
    fields: Mapping[str, Any],
    customer_country: str,
    definition: ProductDefinition,
    problems: _Problems,
) -> Decimal:
    field = rule.country_field or "customer_country"
    country = fields.get(rule.country_field) if rule.country_field else customer_country
    factor = rule.factors.get(country) if isinstance(country, str) else None
    if factor is None:
        factor = rule.default
    if factor is None:
        problems.add(field, f"{definition.policy_name} is not available for {country}")
        return Decimal(1)
    return factor


def _choice_key(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    return None


def _field_factor(rule: FieldFactorRule, fields: Mapping[str, Any], problems: _Problems) -> Decimal:
    key = _choice_key(fields.get(rule.field))
    factor = rule.factors.get(key) if key is not None else None
    if factor is None:
        factor = rule.default
    if factor is None:
        choices = ", ".join(rule.factors)
        problems.add(rule.field, f"{rule.field} must be one of: {choices}")
        return Decimal(1)
    return factor


def _benefits(definition: ProductDefinition, currency: str, fx: FxTable) -> list[dict[str, Any]]:
    base = definition.base_currency
    benefits = []
    for benefit in definition.benefits:
        entry: dict[str, Any] = {"description": benefit.description, "policy_currency": base}
        if benefit.limit_description is not None:
            entry["limit_description"] = benefit.limit_description
        if benefit.limit is not None:
            entry["limit"] = quantize(fx.convert(benefit.limit, base, currency), currency)
            entry["limit_policy_currency"] = quantize(benefit.limit, base)
        if benefit.excess is not None:
            entry["excess"] = quantize(fx.convert(benefit.excess, base, currency), currency)
            entry["excess_policy_currency"] = quantize(benefit.excess, base)
        if benefit.excess_description is not None:
            entry["excess_description"] = benefit.excess_description
        benefits.append(entry)
    return benefits


def rate(
    definition: ProductDefinition,
    fields: Mapping[str, Any],
    *,
    currency: str,
    customer_country: str,
    start: datetime,
    end: datetime,
    fx: FxTable,
) -> Rating:
    """Price one product for one request.

    Premium: the additive rules (flat, per day, per unit, percentage of an insured value)
    summed, times every factor (age band, country, field), bounded by the minimum and maximum
    premium, rounded half-up. Taxes follow the customer's country (or the `default` list):
    percentages of the rounded premium, fixed amounts converted. Commission is a percentage
    of the rounded premium. Raises `RatingError` with every reason it cannot be priced.
    """
    if currency not in definition.currencies:
        sold = ", ".join(definition.currencies)
        raise RatingError(
            {"currency": [f"{definition.policy_name} is not sold in {currency}; use one of {sold}"]}
        )
    try:
        with localcontext(_ARITHMETIC):
            return _rate(definition, fields, currency, customer_country.upper(), start, end, fx)
    except ArithmeticError:
        raise RatingError(
            {NON_FIELD_ERRORS: ["The amounts in this request are too large to price."]}
        ) from None


def _rate(
    definition: ProductDefinition,
    fields: Mapping[str, Any],
    currency: str,
    customer_country: str,
    start: datetime,
    end: datetime,
    fx: FxTable,
) -> Rating:
    base = definition.base_currency
    problems = _Problems()
    additive = Decimal(0)
    factor = Decimal(1)
    minimum: Decimal | None = None
    maximum: Decimal | None = None

    for rule in definition.pricing:
        if isinstance(rule, FlatRule):
            additive += fx.convert(rule.amount, base, currency)
        elif isinstance(rule, PerDayRule):
            units = _units(rule.per, fields, problems) if rule.per is not None else Decimal(1)
            days = cover_days(start, end)
            additive += fx.convert(rule.amount, base, currency) * days * units
        elif isinstance(rule, PerUnitRule):
            additive += fx.convert(rule.amount, base, currency) * _units(
                rule.units, fields, problems
            )
        elif isinstance(rule, PercentageRule):
            additive += _insured_value(rule.of, fields, problems) * rule.rate / 100
        elif isinstance(rule, AgeBandFactorRule):
            factor *= _age_factor(rule, fields, problems)
        elif isinstance(rule, CountryFactorRule):
            factor *= _country_factor(rule, fields, customer_country, definition, problems)
        elif isinstance(rule, FieldFactorRule):
            factor *= _field_factor(rule, fields, problems)
        elif isinstance(rule, MinimumPremiumRule):
            minimum = fx.convert(rule.amount, base, currency)
        elif isinstance(rule, MaximumPremiumRule):
            maximum = fx.convert(rule.amount, base, currency)

    cover_amount = None
    cover = definition.cover_amount
    if cover is not None:
        if cover.value is not None:
            cover_value = _insured_value(cover.value, fields, problems)
        else:
            assert cover.amount is not None  # cover_amount has exactly one of value/amount
            cover_value = fx.convert(cover.amount, base, currency)
        if cover.maximum is not None:
            cover_value = min(cover_value, fx.convert(cover.maximum, base, currency))
        cover_amount = quantize(cover_value, currency)

    if problems.errors:
        raise RatingError(problems.errors)

    raw_premium = additive * factor
    if minimum is not None:
        raw_premium = max(raw_premium, minimum)
    if maximum is not None:
        raw_premium = min(raw_premium, maximum)
    premium = quantize(raw_premium, currency)

    country_taxes = definition.taxes.get(customer_country)
    if country_taxes is None:
        country_taxes = definition.taxes.get("default", [])
    lines = []
    for tax in country_taxes:
        if isinstance(tax, FixedTax):
            amount = fx.convert(tax.amount, tax.currency or base, currency)
        else:
            amount = premium * tax.rate / 100
        lines.append(TaxLine(tax.tax_code, quantize(amount, currency)))
    total_tax = quantize(sum((line.amount for line in lines), Decimal(0)), currency)
    commission = quantize(premium * definition.commission.rate / 100, currency)

    return Rating(
        currency=currency,
        policy_currency=base,
        premium=premium,
        taxes=tuple(lines),
        total_tax=total_tax,
        price=quantize(premium + total_tax, currency),
        partner_commission=commission,
        total_commission=commission,
        cover_amount=cover_amount,
        benefits=_benefits(definition, currency, fx),
    )
