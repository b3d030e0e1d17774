"""The overview: bookings, premium and refunds of the last 30 days as charts, the health of
the webhook endpoints, and the messages that failed."""

from __future__ import annotations

from datetime import UTC

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from coverline.dashboard import charts, repository
from coverline.dashboard.web import PartnerPage, page, partner_page
from coverline.kit.money import format_money, from_minor
from coverline.messaging import service as messaging
from coverline.webhooks import service as webhooks

router = APIRouter()
DAYS = 30


@router.get("/{code}/{mode}")
async def overview(request: Request, p: PartnerPage = Depends(partner_page)) -> Response:
    today = p.now.astimezone(UTC).date()
    async with p.services.database.reading() as session:
        figures = await repository.daily_figures(session, p.partner.id, p.mode, today, DAYS)
        endpoints = await webhooks.list_endpoints(
            session, webhooks.EndpointScope(p.partner.id, p.mode, p.now)
        )
        health = await repository.endpoint_health(session, [e.id for e in endpoints])
        failed_count, failed_messages = await messaging.list_messages(
            session, p.partner.id, p.mode, booking=None, status=messaging.FAILED, limit=5, offset=0
        )
    currencies = figures.currencies()
    currency = request.query_params.get("currency", "")
    if currency not in currencies:
        currency = currencies[0] if currencies else ""
    labels = [day.strftime("%d %b") for day in figures.days]
    bookings_chart = charts.bar_chart(
        "bookings-chart",
        f"Bookings per day, last {DAYS} days",
        f"{sum(figures.bookings)} bookings from {labels[0]} to {labels[-1]}.",
        labels,
        [charts.Series("Bookings", "bar-bookings", figures.bookings)],
        lambda value: f"{value:g}",
    )
    money_chart = None
    premium = figures.premium.get(currency, [0] * DAYS)
    refunds = figures.refunds.get(currency, [0] * DAYS)
    if currency:

        def money_text(minor: float) -> str:
            return format_money(from_minor(round(minor), currency), currency)

        money_chart = charts.bar_chart(
            "money-chart",
            f"Premium and refunds per day in {currency}, last {DAYS} days",
            f"Premium {money_text(sum(premium))}, refunds {money_text(sum(refunds))}.",
            labels,
            [
                charts.Series("Premium", "bar-premium", premium),
                charts.Series("Refunds", "bar-refunds", refunds),
            ],
            money_text,
        )
    return await page(
        p,
        "overview.html",
        "overview",
        days=DAYS,
        figures=figures,
        labels=labels,
        rows=list(zip(labels, figures.bookings, premium, refunds, strict=True)),
        currency=currency,
        currencies=currencies,
        bookings_chart=bookings_chart,
        money_chart=money_chart,
        total_bookings=sum(figures.bookings),
        total_premium=sum(premium),
        total_refunds=sum(refunds),
        endpoints=endpoints,
        health=health,
        failed_count=failed_count,
        failed_messages=failed_messages,
    )
