"""Reference data shapes: countries, currencies, languages and a country's regions."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


class _Frozen(BaseModel):
    # Instances are cached and shared between requests, so none may be changed in place.
    model_config = ConfigDict(frozen=True)


class Country(_Frozen):
    code: str = Field(description="ISO 3166-1 alpha-2 code.", examples=["NG"])
    alpha3: str = Field(description="ISO 3166-1 alpha-3 code.", examples=["NGA"])
    name: str = Field(examples=["Nigeria"])
    official_name: str | None = Field(examples=["Federal Republic of Nigeria"])
    numeric: str = Field(description="ISO 3166-1 numeric code.", examples=["566"])
    currency: str | None = Field(
        description="ISO 4217 code of the legal tender in use today; null where there is none.",
        examples=["NGN"],
    )
    calling_code: str | None = Field(
        description="International dialling prefix; null where there is none.",
        examples=["+234"],
    )


class Currency(_Frozen):
    code: str = Field(description="ISO 4217 alphabetic code.", examples=["NGN"])
    name: str = Field(examples=["Naira"])
    numeric: str = Field(description="ISO 4217 numeric code.", examples=["566"])
    minor_units: int = Field(
        description="Digits after the decimal point in amounts of this currency.", examples=[2]
    )
    symbol: str = Field(
        description="Symbol as written in English in the issuing country, where such a locale "
        "exists, otherwise in generic English.",
        examples=["₦"],
    )


class Language(_Frozen):
    code: str = Field(description="ISO 639-1 code.", examples=["en"])
    name: str = Field(examples=["English"])


class Region(_Frozen):
    code: str = Field(description="ISO 3166-2 subdivision code.", examples=["NG-LA"])
    name: str = Field(examples=["Lagos"])
    type: str = Field(examples=["State"])
    parent_code: str | None = Field(
        description="ISO 3166-2 code of the enclosing subdivision; null at the first level.",
        examples=[None],
    )
    # Never null on the wire: the key is left out instead, so the schema shows only the array.
    local_government_areas: tuple[str, ...] | SkipJsonSchema[None] = Field(
        default=None,
        description="Local government areas of a Nigerian state or of the FCT; "
        "absent for other countries.",
        examples=[["Agege", "Ikeja"]],
        exclude_if=lambda value: value is None,
    )


class CountryList(BaseModel):
    count: int
    results: list[Country]


class CurrencyList(BaseModel):
    count: int
    results: list[Currency]


class LanguageList(BaseModel):
    count: int
    results: list[Language]


class RegionList(BaseModel):
    count: int
    results: list[Region]
