"""Checks of ISO codes, phones and e-mail addresses, with the messages partners see."""

from __future__ import annotations

import re
from functools import cache

import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

_LANGUAGE = re.compile(r"^([A-Za-z]{2})(?:[-_]([A-Za-z]{2}))?$")


@cache
def is_country(code: str) -> bool:
    return len(code) == 2 and code.isupper() and pycountry.countries.get(alpha_2=code) is not None


@cache
def is_currency(code: str) -> bool:
    return len(code) == 3 and code.isupper() and pycountry.currencies.get(alpha_3=code) is not None


@cache
def is_language(code: str) -> bool:
    """ISO 639-1 with an optional region: `en`, `en-us`, `pt-BR`."""
    match = _LANGUAGE.fullmatch(code)
    if match is None:
        return False
    if pycountry.languages.get(alpha_2=match.group(1).lower()) is None:
        return False
    region = match.group(2)
    return region is None or is_country(region.upper())


def country_error(code: str) -> str:
    return f"'{code}' is not an ISO 3166-1 alpha-2 country code."


def currency_error(code: str) -> str:
    return f"'{code}' is not an ISO 4217 currency code."


def normalise_phone(value: str) -> str:
    """E.164, or ValueError with the message XCover gives."""
    text = value.strip()
    if not text.startswith("+"):
        raise ValueError('The phone number should start with "+" character')
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("The phone number is not valid.") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError("The phone number is not valid.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(value: str) -> str:
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"Enter a valid email address ({exc}).") from exc
