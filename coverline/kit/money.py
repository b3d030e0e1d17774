"""Exact money: ISO 4217 minor units, half-up quantization, formatting and JSON numbers.

Amounts are `Decimal` everywhere in the domain. Binary floats appear only at the very edge,
in `json_number`, where an already quantized amount becomes a JSON number.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal
from functools import lru_cache

import pycountry
from babel import Locale, UnknownLocaleError, localedata
from babel.core import get_global
from babel.numbers import format_currency, get_currency_precision

DEFAULT_LOCALE = "en_GB"

# Wide enough that quantizing any amount the platform can hold never runs out of digits.
_QUANTIZE_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)


@lru_cache(maxsize=512)
def is_currency(code: str) -> bool:
    """Whether `code` is an ISO 4217 alphabetic currency code (upper case, as on the wire)."""
    if len(code) != 3 or not code.isascii() or not code.isupper():
        return False
    return pycountry.currencies.get(alpha_3=code) is not None


@lru_cache(maxsize=512)
def minor_units(currency: str) -> int:
    """Digits after the decimal point for `currency` (JPY 0, GBP 2, BHD 3)."""
    if not is_currency(currency):
        raise ValueError(f"unknown currency {currency!r}")
    return int(get_currency_precision(currency))


@lru_cache(maxsize=512)
def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def quantize(amount: Decimal, currency: str) -> Decimal:
    """Round `amount` half-up to the currency's minor units; never returns a negative zero."""
    quantized = amount.quantize(_quantum(currency), context=_QUANTIZE_CONTEXT)
    return quantized.copy_abs() if quantized.is_zero() else quantized


def to_minor(amount: Decimal, currency: str) -> int:
    """The amount as an integer count of minor units (pence, cents, fils), rounded half-up."""
    return int(quantize(amount, currency).scaleb(minor_units(currency), context=_QUANTIZE_CONTEXT))


def from_minor(minor: int, currency: str) -> Decimal:
    """An integer count of minor units back to a quantized decimal amount."""
    return Decimal(minor).scaleb(-minor_units(currency), context=_QUANTIZE_CONTEXT)


def json_number(amount: Decimal) -> float | int:
    """The JSON number for an already quantized amount.

    XCover renders money as `2.01`, `1.0`, `0.0`: a float whose shortest repr is the decimal
    itself (true for any amount with up to 15 significant digits). Amounts without a fraction
    part (currencies with no minor units) become integers.
    """
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return int(amount)
    return float(amount)


@lru_cache(maxsize=64)
def _locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return Locale.parse(DEFAULT_LOCALE)


@lru_cache(maxsize=1)
def _currency_territories() -> dict[str, tuple[str, ...]]:
    territories: dict[str, list[str]] = {}
    for territory, currencies in get_global("territory_currencies").items():
        for code, _start, end, tender in currencies:
            if end is None and tender:
                territories.setdefault(code, []).append(territory)
    return {code: tuple(sorted(names)) for code, names in territories.items()}


@lru_cache(maxsize=512)
def _display_symbol(currency: str, locale: Locale) -> str | None:
    """A symbol to show instead of the bare ISO code some locales use.

    CLDR's `en_GB` writes the naira as `NGN5,000.00`; English speakers in Nigeria write
    `₦5,000.00`. When the locale has no symbol of its own for the currency, borrow the one
    used by the same language in a country where the currency is legal tender.
    """
    if locale.currency_symbols.get(currency, currency) != currency:
        return None
    for territory in _currency_territories().get(currency, ()):
        home = f"{locale.language}_{territory}"
        if localedata.exists(home):
            symbol = Locale.parse(home).currency_symbols.get(currency, currency)
            if symbol != currency:
                return str(symbol)
    return None


def format_money(amount: Decimal, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """Display text for an amount: `£2.01`, `US$68.71`, `A$2.75`, `₦5,000.00`, `€10.00`.

    An unknown locale falls back to `en_GB` rather than failing a response.
    """
    return _format(quantize(amount, currency), currency, locale)


@lru_cache(maxsize=8192)
def _format(amount: Decimal, currency: str, locale: str) -> str:
    """Babel's formatting is slow and responses repeat the same few amounts: memoised."""
    babel_locale = _locale(locale)
    text = str(format_currency(amount, currency, locale=babel_locale))
    symbol = _display_symbol(currency, babel_locale)
    return text.replace(currency, symbol, 1) if symbol else text
