"""Product definitions: the catalogue file format and its validation.

A catalogue document is YAML or JSON with two keys: `products` (a list of product
definitions) and `fx` (exchange rates). Everything a partner's quote needs to be priced is
data here: the request fields (a JSON Schema), the period of cover, the pricing rules, taxes,
commission, benefits, renewal, cancellation and instalment terms. `docs/products.md`
describes the format and the demo products.

Amounts in a definition are in the product's `base_currency` unless a rule says otherwise.
Numbers are read as exact decimals: YAML floats and JSON numbers never pass through `float`.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import pycountry
import yaml
from dateutil.relativedelta import relativedelta
from jsonschema import Draft202012Validator, FormatChecker, SchemaError
from jsonschema import ValidationError as JsonSchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from coverline.catalog import patterns
from coverline.kit import dates
from coverline.kit.money import is_currency

DEMO_CATALOG_PATH = Path(__file__).parent / "demo" / "catalog.yaml"

# Keys every quote request item carries besides the product's own fields.
COMMON_REQUEST_FIELDS = frozenset({"policy_type", "policy_type_version", "policy_start_date"})

MAX_AMOUNT = Decimal("1000000000000")
MAX_FACTOR = Decimal(1000)


class CatalogError(ValueError):
    """The catalogue document is invalid; the message says where and why."""


# ---------------------------------------------------------------------------------------------
# Scalars


def _check_currency(code: str) -> str:
    if not is_currency(code):
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


@lru_cache(maxsize=512)
def is_country(code: str) -> bool:
    """Whether `code` is an upper-case ISO 3166-1 alpha-2 country code."""
    if len(code) != 2 or not code.isascii() or not code.isupper():
        return False
    return pycountry.countries.get(alpha_2=code) is not None


def _check_country(code: str) -> str:
    if not is_country(code):
        raise ValueError(f"{code!r} is not an ISO 3166-1 alpha-2 country code")
    return code


_DURATION = re.compile(
    r"^P(?!$)(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)


def parse_duration(text: str) -> relativedelta:
    """An ISO 8601 duration (`P30D`, `P1M`, `P1Y`, `PT12H`) as calendar-aware arithmetic."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P30D, P1M or P1Y")
    parts = {name: int(value) for name, value in match.groupdict().items() if value}
    if not any(parts.values()):
        raise ValueError(f"duration {text!r} must not be zero")
    return relativedelta(**parts)  # type: ignore[arg-type]


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


CurrencyCode = Annotated[str, AfterValidator(_check_currency)]
CountryCode = Annotated[str, AfterValidator(_check_country)]
IsoDuration = Annotated[str, AfterValidator(_check_duration)]
Amount = Annotated[Decimal, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
Percent = Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)]
Factor = Annotated[Decimal, Field(ge=0, le=MAX_FACTOR, allow_inf_nan=False)]
Rate = Annotated[Decimal, Field(gt=0, le=MAX_AMOUNT, allow_inf_nan=False)]
Days = Annotated[int, Field(ge=0, le=3660)]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
# `array[].item`: a number inside each object of an array field.
ItemPath = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*\[\]\.[a-z][a-z0-9_]*$")]
Text = Annotated[str, Field(min_length=1)]


def split_item_path(path: str) -> tuple[str, str]:
    """`tickets[].price` -> (`tickets`, `price`)."""
    array, item = path.split("[].", 1)
    return array, item


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Content


class ContentDefinition(_Model):
    title: Text
    description: str = ""
    disclaimer: str = ""
    optout_msg: str = ""
    header: str | None = None


class UnderwriterDefinition(_Model):
    name: Text
    disclaimer: str = ""


_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)\}")


def render_text(template: str, fields: Mapping[str, Any]) -> str:
    """Fill `{field}` placeholders with top-level string or number request fields.

    Only a bare field name is recognised; anything else (attribute access, indexing, format
    specs) stays as written. A missing or non-scalar field renders as an empty string.
    """

    def replace(match: re.Match[str]) -> str:
        value = fields.get(match.group(1))
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            return ""
        return str(value)

    return _PLACEHOLDER.sub(replace, template)


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


# ---------------------------------------------------------------------------------------------
# Where numbers come from in a request


class ValueSource(_Model):
    """An insured value taken from the request, in the quote currency.

    Exactly one of `field` (a number field), `sum` or `mean` (`array[].item`: the sum or the
    average of a number across an array's objects); `times` multiplies by an integer field.
    """

    field: FieldName | None = None
    sum: ItemPath | None = None
    mean: ItemPath | None = None
    times: FieldName | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ValueSource:
        if sum(x is not None for x in (self.field, self.sum, self.mean)) != 1:
            raise ValueError("a value source needs exactly one of field, sum or mean")
        return self

    def referenced_fields(self) -> Iterator[str]:
        for path in (self.field, self.sum, self.mean, self.times):
            if path is not None:
                yield path


class UnitSource(_Model):
    """A count from the request: an integer `field`, or `count` (the length of an array)."""

    field: FieldName | None = None
    count: FieldName | None = None

    @model_validator(mode="after")
    def _one_source(self) -> UnitSource:
        if (self.field is None) == (self.count is None):
            raise ValueError("a unit source needs exactly one of field or count")
        return self

    @property
    def name(self) -> str:
        return self.field if self.field is not None else str(self.count)


# ---------------------------------------------------------------------------------------------
# Pricing rules. Additive rules sum to a premium in the quote currency; factor rules multiply
# it; the minimum and maximum premium bound the result.


class FlatRule(_Model):
    kind: Literal["flat"]
    amount: Amount


class PerDayRule(_Model):
    """`amount` per started day of cover, optionally per unit (per traveller)."""

    kind: Literal["per_day"]
    amount: Amount
    per: UnitSource | None = None


class PerUnitRule(_Model):
    kind: Literal["per_unit"]
    amount: Amount
    units: UnitSource


class PercentageRule(_Model):
    """`rate` percent of an insured value the customer declared (already in quote currency)."""

    kind: Literal["percentage"]
    rate: Percent
    of: ValueSource


class AgeBand(_Model):
    min_age: Annotated[int, Field(ge=0, le=200)]
    max_age: Annotated[int, Field(ge=0, le=200)]
    factor: Factor

    @model_validator(mode="after")
    def _ordered(self) -> AgeBand:
        if self.min_age > self.max_age:
            raise ValueError(f"min_age {self.min_age} is above max_age {self.max_age}")
        return self


class AgeBandFactorRule(_Model):
    """Each person's band factor, averaged over the people (`travellers[].age`).

    With a per-person premium that is the same as pricing each person at their own band.
    An age outside every band cannot be insured.
    """

    kind: Literal["age_band_factor"]
    ages: ItemPath
    bands: Annotated[list[AgeBand], Field(min_length=1)]

    @model_validator(mode="after")
    def _no_overlap(self) -> AgeBandFactorRule:
        ordered = sorted(self.bands, key=lambda band: band.min_age)
        for previous, band in itertools.pairwise(ordered):
            if band.min_age <= previous.max_age:
                raise ValueError(
                    f"age bands {previous.min_age}-{previous.max_age} and "
                    f"{band.min_age}-{band.max_age} overlap"
                )
        return self


class CountryFactorRule(_Model):
    """A factor by country: `country_field` from the request, else the customer's country.

    Without a `default`, a country not listed cannot be insured.
    """

    kind: Literal["country_factor"]
    country_field: FieldName | None = None
    factors: dict[CountryCode, Factor]
    default: Factor | None = None


class FieldFactorRule(_Model):
    """A factor by the value of a string, integer or boolean field (`true`/`false` keys)."""

    kind: Literal["field_factor"]
    field: FieldName
    factors: Annotated[dict[str, Factor], Field(min_length=1)]
    default: Factor | None = None


class MinimumPremiumRule(_Model):
    kind: Literal["minimum_premium"]
    amount: Amount


class MaximumPremiumRule(_Model):
    kind: Literal["maximum_premium"]
    amount: Amount


AdditiveRule = FlatRule | PerDayRule | PerUnitRule | PercentageRule
FactorRule = AgeBandFactorRule | CountryFactorRule | FieldFactorRule
PricingRule = Annotated[
    FlatRule
    | PerDayRule
    | PerUnitRule
    | PercentageRule
    | AgeBandFactorRule
    | CountryFactorRule
    | FieldFactorRule
    | MinimumPremiumRule
    | MaximumPremiumRule,
    Field(discriminator="kind"),
]


# ---------------------------------------------------------------------------------------------
# Taxes, commission, benefits, cover


class PercentageTax(_Model):
    """`rate` percent of the premium."""

    tax_code: Text
    kind: Literal["percentage"]
    rate: Percent


class FixedTax(_Model):
    """A fixed amount in `currency` (the product's base currency when absent)."""

    tax_code: Text
    kind: Literal["fixed"]
    amount: Amount
    currency: CurrencyCode | None = None


TaxDefinition = Annotated[PercentageTax | FixedTax, Field(discriminator="kind")]


def _check_tax_table(table: dict[str, list[Any]]) -> dict[str, list[Any]]:
    for country, taxes in table.items():
        if country != "default" and not is_country(country):
            raise ValueError(
                f"tax table key {country!r} is neither 'default' nor an ISO 3166-1 alpha-2 code"
            )
        codes = [tax.tax_code for tax in taxes]
        if len(codes) != len(set(codes)):
            raise ValueError(f"taxes for {country} repeat a tax_code")
    return table


class CommissionDefinition(_Model):
    """The partner's commission: `rate` percent of the premium (before tax)."""

    rate: Percent = Decimal(0)


class BenefitDefinition(_Model):
    description: Text
    limit: Amount | None = None
    excess: Amount | None = None
    limit_description: str | None = None
    excess_description: str | None = None


class CoverAmountDefinition(_Model):
    """The sum insured: an insured `value` from the request, or a fixed `amount`.

    `amount` and `maximum` are in the base currency.
    """

    value: ValueSource | None = None
    amount: Amount | None = None
    maximum: Amount | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CoverAmountDefinition:
        if (self.value is None) == (self.amount is None):
            raise ValueError("cover_amount needs exactly one of value or amount")
        return self


# ---------------------------------------------------------------------------------------------
# Period, renewal, cancellation, instalments


class PeriodDefinition(_Model):
    """How the end of cover follows from the request.

    `end_field`: a date-time request field (the event, the end of the trip); or `duration`:
    an ISO 8601 duration after the start. `max_days` refuses longer periods.
    """

    end_field: FieldName | None = None
    duration: IsoDuration | None = None
    max_days: Annotated[int, Field(ge=1, le=36600)] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PeriodDefinition:
        if (self.end_field is None) == (self.duration is None):
            raise ValueError("period needs exactly one of end_field or duration")
        return self


class RenewalDefinition(_Model):
    period: IsoDuration
    notification_days: Days
    grace_days: Days


class FlatAdjustmentFee(_Model):
    kind: Literal["flat"]
    amount: Amount


class PercentageAdjustmentFee(_Model):
    """`rate` percent of the refund otherwise due."""

    kind: Literal["percentage"]
    rate: Percent


AdjustmentFee = Annotated[FlatAdjustmentFee | PercentageAdjustmentFee, Field(discriminator="kind")]


class CancellationDefinition(_Model):
    """Cancellation terms: a full refund within `cooling_off_days`, pro rata afterwards."""

    cooling_off_days: Days = 0
    adjustment_fee: AdjustmentFee | None = None
    refund: Literal["pro_rata"] = "pro_rata"


class InstalmentsDefinition(_Model):
    """The premium may be paid in `count` monthly instalments."""

    count: Annotated[int, Field(ge=2, le=60)]


# ---------------------------------------------------------------------------------------------
# Request field validation (JSON Schema)


def _is_number(_checker: object, instance: object) -> bool:
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        return True
    if isinstance(instance, float):
        return math.isfinite(instance)
    if isinstance(instance, Decimal):
        return instance.is_finite()
    return False


def _is_integer(checker: object, instance: object) -> bool:
    if not _is_number(checker, instance):
        return False
    if isinstance(instance, int):
        return True
    if isinstance(instance, float):
        return instance.is_integer()
    return isinstance(instance, Decimal) and instance == instance.to_integral_value()


_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$", re.ASCII
)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time with its offset kept (`Z` becomes +00:00)."""
    if not _RFC3339.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 date-time with a time zone offset")
    return dates.parse_rfc3339(text)


def _check_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    try:
        parse_rfc3339(instance)
    except ValueError:
        return False
    return True


def _check_date(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", instance, re.ASCII):
        return False
    try:
        date.fromisoformat(instance)
    except ValueError:
        return False
    return True


def _check_country_format(instance: object) -> bool:
    return not isinstance(instance, str) or is_country(instance)


def _check_currency_format(instance: object) -> bool:
    return not isinstance(instance, str) or is_currency(instance)


FORMAT_CHECKER = FormatChecker()
FORMAT_CHECKER.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
FORMAT_CHECKER.checks("date-time")(_check_date_time)
FORMAT_CHECKER.checks("date")(_check_date)
FORMAT_CHECKER.checks("country")(_check_country_format)
FORMAT_CHECKER.checks("currency")(_check_currency_format)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not patterns.search(pattern, instance):
        yield JsonSchemaError(f"{instance!r} does not match {pattern!r}")


# Draft 2020-12 with numbers that are finite and never booleans, and patterns matched by RE2
# (`coverline.catalog.patterns`: a partner's text never makes a match backtrack).
FieldsValidator = extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _is_number, "integer": _is_integer}
    ),
)


def _plain_json(value: Any) -> Any:
    """Schema numbers as int/float (they are bounds, not money) so the schema stays JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_json(item) for item in value]
    return value


def _check_fields_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        FieldsValidator.check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise ValueError(
            f"fields_schema is not a valid JSON Schema: {error.message} at {where}"
        ) from None
    _check_references_within(schema)
    _check_patterns(schema)
    if schema.get("type") != "object":
        raise ValueError('fields_schema must have "type": "object"')
    if schema.get("additionalProperties") is not False:
        raise ValueError('fields_schema must have "additionalProperties": false')
    if not isinstance(schema.get("properties"), dict):
        raise ValueError("fields_schema must list the fields under properties")
    clashes = sorted(COMMON_REQUEST_FIELDS & schema["properties"].keys())
    if clashes:
        raise ValueError(f"fields_schema must not define the common request fields {clashes}")
    return schema


def _refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"$ref", "$dynamicRef"}:
                yield value
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _check_patterns(node: Any) -> None:
    """Every `pattern` of the schema is one RE2 matches; there is no `patternProperties`
    (JSON Schema validators match its keys with Python's `re` in several keywords: fields
    are named under `properties`)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                problem = patterns.problem(value)
                if problem is not None:
                    raise ValueError(
                        f"fields_schema has the pattern {value!r}, which is not one RE2 matches "
                        f"({problem}): patterns are matched in linear time, with no "
                        "backreferences or lookaround"
                    )
            elif key == "patternProperties" and isinstance(value, dict):
                raise ValueError(
                    "fields_schema must not use patternProperties: name each field under properties"
                )
            _check_patterns(value)
    elif isinstance(node, list):
        for item in node:
            _check_patterns(item)


_FIELDS_URI = "urn:coverline:fields-schema"


def _check_references_within(schema: dict[str, Any]) -> None:
    """Every `$ref` points into the schema itself, at something there: a product's fields are
    never checked against a document fetched over the network, nor against nothing."""
    resolver = (
        Registry()
        .with_resource(_FIELDS_URI, DRAFT202012.create_resource(schema))
        .resolver(base_uri=_FIELDS_URI)
    )
    for ref in _refs(schema):
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ValueError(f"fields_schema may refer only within itself (#/...), not to {ref!r}")
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise ValueError(f"fields_schema refers to nothing at {ref!r}") from None


FieldsSchema = Annotated[
    dict[str, Any], BeforeValidator(_plain_json), AfterValidator(_check_fields_schema)
]


# ---------------------------------------------------------------------------------------------
# The product


class ProductDefinition(_Model):
    # The lengths and range of the products table's columns.
    policy_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    policy_type_version: Annotated[int, Field(ge=1, le=2**31 - 1)] = 1
    policy_name: Annotated[str, Field(min_length=1, max_length=200)]
    policy_code: Text
    category: Text
    group_name: Text
    content: ContentDefinition
    underwriter: UnderwriterDefinition
    fields_schema: FieldsSchema
    base_currency: CurrencyCode
    currencies: Annotated[list[CurrencyCode], Field(min_length=1)]
    period: PeriodDefinition
    pricing: Annotated[list[PricingRule], Field(min_length=1)]
    taxes: Annotated[dict[str, list[TaxDefinition]], AfterValidator(_check_tax_table)] = {}
    commission: CommissionDefinition = CommissionDefinition()
    benefits: list[BenefitDefinition] = []
    cover_amount: CoverAmountDefinition | None = None
    renewal: RenewalDefinition | None = None
    cancellation: CancellationDefinition = CancellationDefinition()
    instalments: InstalmentsDefinition | None = None

    _fields_validator: Validator = PrivateAttr()
    _period_delta: relativedelta | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> ProductDefinition:
        if len(set(self.currencies)) != len(self.currencies):
            raise ValueError("currencies lists a currency twice")
        self._check_pricing()
        self._check_references()
        if self.renewal is not None and self.instalments is not None:
            raise ValueError("a product is renewable or paid by instalments, not both")
        # An empty registry: nothing is ever retrieved (the schema refers only within itself).
        self._fields_validator = FieldsValidator(
            self.fields_schema, format_checker=FORMAT_CHECKER, registry=Registry()
        )
        if self.period.duration is not None:
            self._period_delta = parse_duration(self.period.duration)
        return self

    def _check_pricing(self) -> None:
        if not any(isinstance(rule, AdditiveRule) for rule in self.pricing):
            raise ValueError(
                "pricing needs at least one flat, per_day, per_unit or percentage rule"
            )
        minimums = [rule for rule in self.pricing if isinstance(rule, MinimumPremiumRule)]
        maximums = [rule for rule in self.pricing if isinstance(rule, MaximumPremiumRule)]
        if len(minimums) > 1 or len(maximums) > 1:
            raise ValueError("pricing allows one minimum_premium and one maximum_premium")
        if minimums and maximums and minimums[0].amount > maximums[0].amount:
            raise ValueError("minimum_premium is above maximum_premium")

    def _referenced_paths(self) -> Iterator[tuple[str, str]]:
        """(where, field or `array[].item`) for every request field the definition reads."""
        for index, rule in enumerate(self.pricing):
            where = f"pricing[{index}]"
            if isinstance(rule, PercentageRule):
                for path in rule.of.referenced_fields():
                    yield where, path
            elif isinstance(rule, PerDayRule | PerUnitRule):
                units = rule.per if isinstance(rule, PerDayRule) else rule.units
                if units is not None:
                    yield where, units.name
            elif isinstance(rule, AgeBandFactorRule):
                yield where, rule.ages
            elif isinstance(rule, CountryFactorRule) and rule.country_field is not None:
                yield where, rule.country_field
            elif isinstance(rule, FieldFactorRule):
                yield where, rule.field
        if self.cover_amount is not None and self.cover_amount.value is not None:
            for path in self.cover_amount.value.referenced_fields():
                yield "cover_amount", path
        for name in ("title", "header", "description"):
            for field in placeholders(getattr(self.content, name) or ""):
                yield f"content.{name}", field
        if self.period.end_field is not None:
            yield "period", self.period.end_field

    def _check_references(self) -> None:
        properties: dict[str, Any] = self.fields_schema["properties"]
        for where, path in self._referenced_paths():
            if "[]." in path:
                array, item = split_item_path(path)
                items = properties.get(array, {}).get("items", {})
                if not isinstance(items, dict) or item not in items.get("properties", {}):
                    raise ValueError(f"{where} reads {path}, which fields_schema does not define")
            elif path not in properties:
                raise ValueError(f"{where} reads {path}, which fields_schema does not define")
        end_field = self.period.end_field
        if end_field is not None:
            if end_field not in self.fields_schema.get("required", []):
                raise ValueError(f"period.end_field {end_field} must be a required field")
            if properties[end_field].get("format") != "date-time":
                raise ValueError(f'period.end_field {end_field} must have "format": "date-time"')

    @property
    def fields_validator(self) -> Validator:
        """The compiled JSON Schema validator for this product's request fields."""
        return self._fields_validator

    @property
    def period_delta(self) -> relativedelta | None:
        return self._period_delta

    @property
    def is_renewable(self) -> bool:
        return self.renewal is not None

    def referenced_currencies(self) -> set[str]:
        currencies = {self.base_currency, *self.currencies}
        for taxes in self.taxes.values():
            currencies.update(
                tax.currency for tax in taxes if isinstance(tax, FixedTax) and tax.currency
            )
        return currencies

    def render_content(self, fields: Mapping[str, Any]) -> dict[str, str | None]:
        """The content block for a quote, placeholders filled from the request fields."""
        content = self.content
        return {
            "title": render_text(content.title, fields),
            "header": render_text(content.header, fields) if content.header is not None else None,
            "description": render_text(content.description, fields),
            "optout_msg": content.optout_msg,
            "disclaimer": content.disclaimer,
        }


# ---------------------------------------------------------------------------------------------
# The document


class FxDefinition(_Model):
    """Exchange rates: `rates[X]` is how many units of X one unit of `base` buys."""

    base: CurrencyCode
    rates: dict[CurrencyCode, Rate]

    @model_validator(mode="after")
    def _base_not_in_rates(self) -> FxDefinition:
        if self.base in self.rates:
            raise ValueError(f"fx.rates must not list the base currency {self.base}")
        return self

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset({self.base, *self.rates})


class CatalogDocument(_Model):
    products: list[ProductDefinition]
    fx: FxDefinition | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CatalogDocument:
        seen: set[tuple[str, int]] = set()
        covered = self.fx.currencies if self.fx is not None else frozenset()
        for index, product in enumerate(self.products):
            key = (product.policy_type, product.policy_type_version)
            if key in seen:
                raise ValueError(
                    f"products[{index}]: {product.policy_type} version "
                    f"{product.policy_type_version} is defined twice"
                )
            seen.add(key)
            needed = product.referenced_currencies()
            if len(needed) > 1 and not needed <= covered:
                missing = ", ".join(sorted(needed - covered))
                raise ValueError(
                    f"products[{index}] ({product.policy_type}): no exchange rate for "
                    f"{missing} in the fx table"
                )
        return self

    def find_product(
        self, policy_type: str, policy_type_version: int = 1
    ) -> ProductDefinition | None:
        for product in self.products:
            if (product.policy_type, product.policy_type_version) == (
                policy_type,
                policy_type_version,
            ):
                return product
        return None


# ---------------------------------------------------------------------------------------------
# Loading


def _location(loc: tuple[int | str, ...], data: Any) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    if len(loc) >= 2 and loc[0] == "products" and isinstance(loc[1], int):
        try:
            policy_type = data["products"][loc[1]]["policy_type"]
        except (KeyError, IndexError, TypeError):
            policy_type = None
        if isinstance(policy_type, str):
            prefix = f"products[{loc[1]}]"
            text = f"{prefix} ({policy_type}){text[len(prefix) :]}"
    return text or "(document)"


def _readable(error: ValidationError, data: Any) -> str:
    lines = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{_location(item['loc'], data)}: {message}")
    return "invalid catalogue: " + "; ".join(lines)


def parse_catalog(data: Any) -> CatalogDocument:
    """Validate a catalogue document already parsed from YAML or JSON."""
    try:
        return CatalogDocument.model_validate(data)
    except ValidationError as error:
        raise CatalogError(_readable(error, data)) from None


class _DecimalLoader(yaml.SafeLoader):
    """YAML with exact decimals, dates kept as text, and duplicate keys and aliases refused
    (an alias repeats what it names: a few of them nested make a few bytes a billion
    items)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None,
                None,
                "aliases (*name) are not accepted",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        return super().compose_node(parent, index)


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite():
        raise yaml.constructor.ConstructorError(
            None, None, f"numbers must be finite decimals, not {text!r}", node.start_mark
        )
    return value


def _construct_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | bool | Decimal) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a string or a number", key_node.start_mark
            )
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_DecimalLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)
_DecimalLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise ValueError(f"duplicate key {key!r}")
        mapping[key] = value
    return mapping


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def load_catalog_file(path: Path) -> CatalogDocument:
    """Read a catalogue from `path`: JSON when it ends in `.json`, YAML otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogError(f"cannot read catalogue {path}: {error}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(
                text,
                parse_float=Decimal,
                parse_constant=_reject_constant,
                object_pairs_hook=_unique_keys,
            )
        else:
            data = yaml.load(text, Loader=_DecimalLoader)  # noqa: S506 (a SafeLoader subclass)
    except (ValueError, yaml.YAMLError) as error:
        raise CatalogError(f"cannot parse catalogue {path}: {error}") from None
    except RecursionError:
        raise CatalogError(f"cannot parse catalogue {path}: nested too deeply") from None
    try:
        return parse_catalog(data)
    except CatalogError as error:
        raise CatalogError(f"{path}: {error}") from None
