"""Quote packages and bookings on the wire, in the shapes of XCover's recorded responses."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from coverline.bookings.instalments import plans_json
from coverline.catalog.definition import ProductDefinition
from coverline.kit.dates import duration_text, partner_time, server_time, with_offset
from coverline.kit.money import format_money, from_minor, json_number
from coverline.quotes.models import Policyholder, Quote, QuotePackage
from coverline.quotes.service import live_quotes
from coverline.renewals.service import renewal_json, upcoming

BOOKED_STATUSES = frozenset({"PENDING_PAYMENT", "CONFIRMED", "CANCELLED", "RENEWED"})
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def _fill(template: str | None, fields: dict[str, Any]) -> str | None:
    """Fill `{field}` placeholders from top-level text and number fields only."""
    if template is None:
        return None

    def value(match: re.Match[str]) -> str:
        found = fields.get(match.group(1))
        if isinstance(found, (str, int, float)) and not isinstance(found, bool):
            return str(found)
        return ""

    return _PLACEHOLDER.sub(value, template)


class Money:
    def __init__(self, currency: str) -> None:
        self.currency = currency

    def pair(self, name: str, amount: Decimal | None) -> dict[str, Any]:
        if amount is None:
            return {name: None, f"{name}_formatted": None}
        return {name: json_number(amount), f"{name}_formatted": format_money(amount, self.currency)}

    def minor(self, name: str, minor: int | None) -> dict[str, Any]:
        amount = None if minor is None else from_minor(minor, self.currency)
        return self.pair(name, amount)


def _policy(
    definition: ProductDefinition, version_id: str, fields: dict[str, Any]
) -> dict[str, Any]:
    content = definition.content
    return {
        "policy_type": definition.policy_type,
        "policy_type_group_name": definition.group_name,
        "policy_name": definition.policy_name,
        "policy_code": definition.policy_code,
        "policy_version": version_id,
        "category": definition.category,
        "content": {
            "title": _fill(content.title, fields),
            "header": _fill(content.header, fields),
            "description": _fill(content.description, fields),
            "optout_msg": content.optout_msg or "",
            "disclaimer": content.disclaimer,
        },
        "underwriter": {
            "disclaimer": definition.underwriter.disclaimer,
            "name": definition.underwriter.name,
        },
        "claim_selector_id": "",
    }


def _benefits(money: Money, quote: Quote) -> list[dict[str, Any]]:
    rendered = []
    base = None
    for benefit in quote.breakdown.get("benefits", []):
        out: dict[str, Any] = {"description": benefit.get("description")}
        for key, value in benefit.items():
            if key == "description" or value is None:
                continue
            if key.endswith("_policy_currency"):
                base = benefit.get("policy_currency")
                out[key] = json_number(Decimal(value))
                if base:
                    out[f"{key}_formatted"] = format_money(Decimal(value), base)
            elif key in {"limit", "excess"}:
                out.update(money.pair(key, Decimal(value)))
            elif key != "policy_currency":
                out[key] = value
        rendered.append(out)
    return rendered


def quote_json(
    quote: Quote,
    package: QuotePackage,
    definition: ProductDefinition,
    public_url: str,
    *,
    booking: bool,
    now: Any = None,
) -> dict[str, Any]:
    money = Money(package.currency)
    breakdown = quote.breakdown
    start = with_offset(quote.start_at, quote.start_offset)
    end = with_offset(quote.end_at, quote.end_offset)
    taxes = [
        {
            **money.pair("tax_amount", Decimal(tax["amount"])),
            "tax_code": tax["tax_code"],
        }
        for tax in breakdown.get("taxes", [])
    ]
    data: dict[str, Any] = {
        "id": quote.id,
        "policy_start_date": partner_time(start),
        "policy_end_date": partner_time(end),
        "status": quote.status,
        **money.minor("price", quote.price_minor),
        "policy": _policy(definition, quote.product_version_id, quote.fields),
        "insured": (quote.insured or {}).get("items"),
        "tax": {
            **money.minor("total_tax", quote.tax_minor),
            **money.minor("total_amount_without_tax", quote.premium_minor),
            "taxes": taxes,
        },
        "duration": duration_text(quote.end_at - quote.start_at),
        "benefits": _benefits(money, quote),
        "commission": {
            **money.pair("partner_commission", Decimal(breakdown.get("partner_commission", "0"))),
            **money.pair("surcharge_commission", Decimal(0)),
            **money.minor("total_commission", quote.commission_minor),
        },
        "created_at": server_time(quote.created_at),
        "confirmed_at": server_time(quote.confirmed_at) if quote.confirmed_at else None,
        "updated_at": server_time(quote.updated_at),
        "cancelled_at": server_time(quote.cancelled_at) if quote.cancelled_at else None,
        "is_renewable": definition.renewal is not None,
        "is_pricebeat_enabled": None,
        **money.minor("cover_amount", quote.cover_amount_minor),
        "pds_url": f"{public_url}/pds/{package.id}?policy_type={definition.policy_type}"
        f"_v{definition.policy_type_version}",
        "attachments": [],
        "files": [],
        "extra_fields": {},
        "surcharge": {"total_amount": None, "total_amount_formatted": None, "surcharges": None},
    }
    if booking:
        pending = upcoming(package.renewals, quote.id)
        data["next_renewal"] = renewal_json(pending) if pending is not None else None
        data["can_be_cancelled"] = quote.status == "CONFIRMED" and (
            now is None or quote.end_at > now
        )
        data["total_renewed_times"] = quote.total_renewed_times
    else:
        data.update(money.minor("discount_price", quote.price_minor))
        data.update(money.pair("discount_amount", Decimal(0)))
        data["instalment_plans"] = plans_json(definition, quote.price_minor, package.currency)
    return data


def _package_head(package: QuotePackage, total_minor: int, public_url: str) -> dict[str, Any]:
    money = Money(package.currency)
    return {
        "id": package.id,
        "status": package.status,
        "currency": package.currency,
        **money.minor("total_price", total_minor),
        "partner_transaction_id": package.partner_transaction_id,
        "created_at": server_time(package.created_at),
        "updated_at": server_time(package.updated_at),
        "pds_url": f"{public_url}/pds/{package.id}",
        "security_token": package.security_token,
    }


def quote_package_json(
    package: QuotePackage,
    definitions: dict[str, ProductDefinition],
    public_url: str,
    *,
    slots: list[Quote | None] | None = None,
    errors: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A quote package: `quotes` keyed "0", "1", …; a slot that could not be priced is null."""
    if package.is_booking:
        shown: list[Quote | None] = [q for q in package.quotes if q.status in BOOKED_STATUSES]
    else:
        shown = slots if slots is not None else list(live_quotes(package))
    priced = [quote for quote in shown if quote is not None]
    total = sum(quote.price_minor for quote in priced)
    money = Money(package.currency)
    return {
        **_package_head(package, total, public_url),
        "quotes": {
            str(index): (
                None
                if quote is None
                else quote_json(
                    quote, package, definitions[quote.product_version_id], public_url, booking=False
                )
            )
            for index, quote in enumerate(shown)
        },
        "bundle_code": None,
        **money.minor("bundle_price", total),
        "bundle_content": {},
        "bundle_discount_percent": 0.0,
        **money.pair("bundle_discount_amount", Decimal(0)),
        "errors": errors or {},
    }


def policyholder_json(holder: Policyholder | None) -> dict[str, Any] | None:
    if holder is None:
        return None
    return {
        "first_name": holder.first_name,
        "middle_name": holder.middle_name,
        "last_name": holder.last_name,
        "email": holder.email,
        "phone": holder.phone,
        "country": holder.country,
        "age": holder.age,
        "address1": holder.address1,
        "address2": holder.address2,
        "city": holder.city,
        "postcode": holder.postcode,
        "region": holder.region,
        "secondary_email": holder.secondary_email,
        "birth_date": holder.birth_date,
        "company": holder.company,
        "allow_updates": holder.allow_updates,
    }


def booked_quotes(package: QuotePackage) -> list[Quote]:
    return [quote for quote in package.quotes if quote.status in BOOKED_STATUSES]


def booking_json(
    package: QuotePackage,
    definitions: dict[str, ProductDefinition],
    public_url: str,
    now: Any,
    *,
    price_diff: bool = False,
) -> dict[str, Any]:
    quotes = booked_quotes(package)
    money = Money(package.currency)
    active = [q for q in quotes if q.status != "CANCELLED"]
    rendered = []
    for quote in quotes:
        data = quote_json(
            quote,
            package,
            definitions[quote.product_version_id],
            public_url,
            booking=True,
            now=now,
        )
        if price_diff:
            data.update(money.pair("price_diff", Decimal(0)))
        rendered.append(data)
    token = package.security_token
    extra = money.pair("total_price_diff", Decimal(0)) if price_diff else {}
    return {
        **_package_head(package, sum(q.price_minor for q in active), public_url),
        "quotes": rendered,
        "coi": {
            "url": f"{public_url}/coi/{package.id}?security_token={token}",
            "pdf": None,
        },
        "policyholder": policyholder_json(package.policyholder),
        **money.minor("total_tax", sum(q.tax_minor for q in active)),
        **money.minor("total_premium", sum(q.premium_minor for q in active)),
        **extra,
    }
