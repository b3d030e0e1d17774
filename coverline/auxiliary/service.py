"""Reference data read from maintained packages, computed once per process.

- Countries, currencies, languages and subdivisions: pycountry (ISO 3166-1, 4217, 639, 3166-2).
- A country's currency, a currency's minor units and symbol: Babel (Unicode CLDR).
- Calling codes: phonenumbers (libphonenumber metadata).
- Nigerian local government areas: naija-data, whose data is compiled from INEC and OCHA
  sources and published under CC BY 4.0 ("naija-data by Akanji Oluwaseun Gabriel").
"""

from __future__ import annotations

from functools import cache

import naija_data
import phonenumbers
import pycountry
from babel import localedata
from babel.numbers import get_currency_precision, get_currency_symbol, get_territory_currencies

from coverline.auxiliary.schemas import Country, Currency, Language, Region
from coverline.kit.errors import NotFound

NIGERIA = "NG"


@cache
def list_countries() -> tuple[Country, ...]:
    countries = (
        Country(
            code=country.alpha_2,
            alpha3=country.alpha_3,
            name=country.name,
            official_name=getattr(country, "official_name", None),
            numeric=country.numeric,
            currency=_territory_currency(country.alpha_2),
            calling_code=_calling_code(country.alpha_2),
        )
        for country in pycountry.countries
    )
    return tuple(sorted(countries, key=lambda country: country.code))


def get_country(code: str) -> Country:
    """The country with this ISO 3166-1 alpha-2 code, in either case."""
    normalised = code.strip().upper()
    country = _countries_by_code().get(normalised)
    if country is None:
        raise NotFound(f"Unknown country code '{normalised}'.")
    return country


@cache
def list_currencies() -> tuple[Currency, ...]:
    currencies = (
        Currency(
            code=currency.alpha_3,
            name=currency.name,
            numeric=currency.numeric,
            minor_units=get_currency_precision(currency.alpha_3),
            symbol=_currency_symbol(currency.alpha_3),
        )
        for currency in pycountry.currencies
    )
    return tuple(sorted(currencies, key=lambda currency: currency.code))


@cache
def list_languages() -> tuple[Language, ...]:
    languages = (
        Language(code=language.alpha_2, name=language.name)
        for language in pycountry.languages
        if hasattr(language, "alpha_2")
    )
    return tuple(sorted(languages, key=lambda language: language.code))


def list_regions(country_code: str) -> tuple[Region, ...]:
    """The ISO 3166-2 subdivisions of a country; for Nigeria each carries its LGAs."""
    return _regions(get_country(country_code).code)


@cache
def _countries_by_code() -> dict[str, Country]:
    return {country.code: country for country in list_countries()}


# Called only with codes that get_country accepted, so the cache holds at most one entry
# per country.
@cache
def _regions(country_code: str) -> tuple[Region, ...]:
    # pycountry leaves this lookup unannotated; it returns None for a country it doesn't know.
    subdivisions = pycountry.subdivisions.get(country_code=country_code) or []  # type: ignore[no-untyped-call]
    lgas = _nigerian_lgas() if country_code == NIGERIA else {}
    regions = (
        Region(
            code=subdivision.code,
            name=subdivision.name,
            type=subdivision.type,
            parent_code=subdivision.parent_code,
            local_government_areas=lgas.get(subdivision.code),
        )
        for subdivision in subdivisions
    )
    return tuple(sorted(regions, key=lambda region: region.code))


@cache
def _nigerian_lgas() -> dict[str, tuple[str, ...]]:
    """LGA names by ISO 3166-2 code of their state (or the FCT)."""
    return {
        state.iso_code: tuple(lga.name for lga in naija_data.lgas(state))
        for state in naija_data.states()
    }


def _territory_currency(country_code: str) -> str | None:
    # Babel lists a territory's tender currencies in use today, the main one first.
    currencies: list[str] = get_territory_currencies(country_code)
    return currencies[0] if currencies else None


def _calling_code(country_code: str) -> str | None:
    prefix: int = phonenumbers.country_code_for_region(country_code)
    return f"+{prefix}" if prefix else None


def _currency_symbol(currency_code: str) -> str:
    # Generic English leaves many currencies as their bare code ("NGN"); English as written
    # where the currency is issued gives the symbol people use there ("₦"). ISO 4217 codes
    # begin with the issuing country's alpha-2 code.
    home_locale = f"en_{currency_code[:2]}"
    locale = home_locale if localedata.exists(home_locale) else "en"
    symbol: str = get_currency_symbol(currency_code, locale)
    return symbol
