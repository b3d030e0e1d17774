"""Request and response bodies of the quote, booking and modification endpoints
(API-CONTRACT §6)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from coverline.kit.http import ResponseBody
from coverline.kit.validation import (
    country_error,
    is_country,
    normalise_email,
    normalise_phone,
)


class QuoteItemIn(BaseModel):
    """One product in a quote request: common fields plus the product's own fields."""

    model_config = ConfigDict(extra="allow")

    policy_type: str = Field(min_length=1, max_length=64)
    policy_type_version: int = Field(default=1, ge=1)
    policy_start_date: str = Field(description="RFC 3339 date-time; its offset is kept.")
    insured: list[dict[str, Any]] | None = None

    def product_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class QuotePackageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: list[QuoteItemIn] = Field(min_length=1, max_length=20)
    currency: str
    customer_country: str | None = None
    customer_region: str | None = Field(default=None, max_length=100)
    customer_language: str | None = None
    partner_transaction_id: str | None = Field(default=None, max_length=255)


class QuoteUpdateItemIn(BaseModel):
    model_config = ConfigDict(extra="allow")

    quote_id: str
    policy_start_date: str | None = None
    insured: list[dict[str, Any]] | None = None

    def product_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class QuotePackageUpdateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: list[QuoteUpdateItemIn] = Field(default_factory=list, max_length=20)
    currency: str | None = None
    customer_country: str | None = None
    customer_region: str | None = Field(default=None, max_length=100)
    customer_language: str | None = None
    partner_transaction_id: str | None = Field(default=None, max_length=255)


class AddQuotesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request: list[QuoteItemIn] = Field(min_length=1, max_length=20)


class QuoteRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str


class DeleteQuotesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quotes: list[QuoteRef] = Field(min_length=1)


def _check_phone(value: str | None) -> str | None:
    return None if value is None else normalise_phone(value)


def _check_email(value: str | None) -> str | None:
    return None if value is None else normalise_email(value)


def _check_country(value: str | None) -> str | None:
    if value is not None and not is_country(value):
        raise ValueError(country_error(value))
    return value


def _not_null(value: str | None) -> str:
    if value is None:
        raise ValueError("This field may not be null.")
    return value


class PolicyholderPatchIn(BaseModel):
    """Policyholder fields; every one optional (direct modification of a booking)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    first_name: str | None = Field(default=None, min_length=1, max_length=200)
    middle_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    country: str | None = None
    age: int | None = Field(default=None, ge=0, le=130)
    address1: str | None = Field(default=None, max_length=300)
    address2: str | None = Field(default=None, max_length=300)
    city: str | None = Field(default=None, max_length=200)
    postcode: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=200)
    secondary_email: str | None = Field(default=None, max_length=320)
    birth_date: date | None = None
    company: str | None = Field(default=None, max_length=300)
    allow_updates: bool | None = None

    # A booking's policyholder always has these: a change may leave them out, never null them.
    _required = field_validator("first_name", "last_name", "email")(_not_null)
    _phone = field_validator("phone")(_check_phone)
    _email = field_validator("email", "secondary_email")(_check_email)
    _country = field_validator("country")(_check_country)


class PolicyholderIn(PolicyholderPatchIn):
    first_name: str = Field(min_length=1, max_length=200)
    last_name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=320)


class BookingQuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    insured: list[dict[str, Any]] | None = None
    instalment_plan: str | None = Field(
        default=None, max_length=32, description="e.g. 1year-monthly, when the product offers it."
    )


class BookingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quotes: list[BookingQuoteIn] = Field(min_length=1)
    policyholder: PolicyholderIn
    require_payment_confirmation: bool = False
    partner_transaction_id: str | None = Field(default=None, max_length=255)


class InstantBookingIn(QuotePackageIn):
    policyholder: PolicyholderIn
    require_payment_confirmation: bool = False


class BookingPatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policyholder: PolicyholderPatchIn | None = None
    partner_transaction_id: str | None = Field(default=None, max_length=255)


class PolicyOut(ResponseBody):
    policy_type: str
    policy_name: str
    policy_code: str | None
    policy_version: str
    category: str | None
    content: dict[str, str | None]
    underwriter: dict[str, str | None]


class QuoteOut(ResponseBody):
    id: str
    policy_start_date: str
    policy_end_date: str
    status: str
    price: float
    price_formatted: str
    policy: PolicyOut
    insured: list[dict[str, Any]] | None
    tax: dict[str, Any]
    duration: str
    benefits: list[dict[str, Any]]
    commission: dict[str, Any]
    created_at: str
    confirmed_at: str | None
    updated_at: str
    cancelled_at: str | None
    is_renewable: bool
    cover_amount: float | None
    cover_amount_formatted: str | None
    pds_url: str


class BookedQuoteOut(QuoteOut):
    next_renewal: dict[str, Any] | None
    can_be_cancelled: bool
    total_renewed_times: int


class PackageHeadOut(ResponseBody):
    id: str = Field(examples=["A1B2C-D3E4F-INS"])
    status: str
    currency: str
    total_price: float
    total_price_formatted: str
    partner_transaction_id: str | None
    created_at: str
    updated_at: str
    pds_url: str
    security_token: str


class QuotePackageOut(PackageHeadOut):
    quotes: dict[str, QuoteOut | None] = Field(
        description='Keyed "0", "1", … in request order; null where a product was not priced.'
    )
    errors: dict[str, Any]


class BookingOut(PackageHeadOut):
    quotes: list[BookedQuoteOut]
    coi: dict[str, str | None]
    policyholder: dict[str, Any] | None
    total_tax: float
    total_tax_formatted: str
    total_premium: float
    total_premium_formatted: str


class BookingListOut(ResponseBody):
    count: int
    next: str | None
    previous: str | None
    results: list[BookingOut]
