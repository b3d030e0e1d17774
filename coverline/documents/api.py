"""The documents responses link to: the product disclosure statement (`pds_url`, public,
no personal data) and the certificate of insurance (`coi.url`, behind the booking's
security token)."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from starlette.responses import HTMLResponse

from coverline.kit.dates import with_offset
from coverline.kit.errors import NotFound
from coverline.kit.money import format_money, from_minor
from coverline.quotes.models import QuotePackage
from coverline.runtime import Services

router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
)
DOCUMENT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def _package(request: Request, package_id: str) -> tuple[QuotePackage, dict[str, Any]]:
    services: Services = request.app.state.services
    async with services.database.reading() as session:
        package = await session.scalar(
            select(QuotePackage)
            .where(QuotePackage.id == package_id)
            .options(selectinload(QuotePackage.quotes), selectinload(QuotePackage.policyholder))
        )
    if package is None:
        raise NotFound("Not found.")
    definitions = await services.catalog.definitions({q.product_version_id for q in package.quotes})
    return package, definitions


def _quotes(
    package: QuotePackage, definitions: dict[str, Any], statuses: set[str]
) -> list[dict[str, Any]]:
    shown = []
    for quote in package.quotes:
        if quote.status not in statuses:
            continue
        definition = definitions[quote.product_version_id]
        shown.append(
            {
                "id": quote.id,
                "status": quote.status,
                "definition": definition,
                "content": definition.render_content(quote.fields),
                "start": with_offset(quote.start_at, quote.start_offset).isoformat(),
                "end": with_offset(quote.end_at, quote.end_offset).isoformat(),
                "price": format_money(
                    from_minor(quote.price_minor, package.currency), package.currency
                ),
            }
        )
    return shown


@router.get("/pds/{package_id}", response_class=HTMLResponse)
async def product_disclosure(
    request: Request, package_id: str, policy_type: str | None = Query(default=None)
) -> HTMLResponse:
    package, definitions = await _package(request, package_id)
    quotes = _quotes(
        package,
        definitions,
        {"RECEIVED", "PENDING_PAYMENT", "CONFIRMED", "CANCELLED", "RENEWED"},
    )
    if policy_type is not None:
        quotes = [
            q
            for q in quotes
            if f"{q['definition'].policy_type}_v{q['definition'].policy_type_version}"
            == policy_type
        ]
    html = templates.get_template("pds.html").render(package=package, quotes=quotes)
    return HTMLResponse(html, headers=DOCUMENT_HEADERS)


@router.get("/coi/{package_id}", response_class=HTMLResponse)
async def certificate(
    request: Request, package_id: str, security_token: str = Query(default="")
) -> HTMLResponse:
    package, definitions = await _package(request, package_id)
    if not package.is_booking or not hmac.compare_digest(
        package.security_token.encode(), security_token.encode()
    ):
        raise NotFound("Not found.")
    quotes = _quotes(package, definitions, {"PENDING_PAYMENT", "CONFIRMED", "CANCELLED", "RENEWED"})
    html = templates.get_template("coi.html").render(
        package=package, quotes=quotes, holder=package.policyholder
    )
    return HTMLResponse(html, headers=DOCUMENT_HEADERS)
