"""Bookings: search and filters with pagination, and one booking with its quotes, prices,
policyholder, renewals, cancellations and a single timeline of events, webhook deliveries
and messages."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from coverline.bookings.service import load_booking
from coverline.dashboard import repository
from coverline.dashboard.repository import BookingFilters, TimelineItem
from coverline.dashboard.web import PartnerPage, not_found, page, page_number, pager, partner_page
from coverline.events.models import Event
from coverline.kit.errors import NotFound
from coverline.messaging import service as messaging
from coverline.messaging.models import Message
from coverline.quotes.presenter import booked_quotes
from coverline.quotes.service import Scope
from coverline.webhooks.models import WebhookDelivery, WebhookEndpoint

router = APIRouter()
PER_PAGE = 20
# A booking's page shows its latest events, deliveries and messages: one renewed for years,
# with many endpoints, has thousands (the logs of webhooks and messages hold them all).
TIMELINE_EVENTS = 100
TIMELINE_DELIVERIES = 500
TIMELINE_MESSAGES = 200


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None


@router.get("/{code}/{mode}/bookings")
async def bookings(request: Request, p: PartnerPage = Depends(partner_page)) -> Response:
    params = request.query_params
    status = params.get("status", "")
    filters = BookingFilters(
        query=params.get("q", "")[:200],
        status=status if status in repository.BOOKING_STATUSES else "",
        product=params.get("product", "")[:100],
        date_from=_date(params.get("from", "")),
        date_to=_date(params.get("to", "")),
    )
    number = page_number(params.get("page"))
    async with p.services.database.reading() as session:
        count, rows = await repository.search_bookings(
            session,
            p.partner.id,
            p.mode,
            filters,
            limit=PER_PAGE,
            offset=(number - 1) * PER_PAGE,
        )
        products = await repository.product_choices(session)
        names = await repository.product_names(
            session, {q.product_version_id for package in rows for q in package.quotes}
        )
    query = {
        "q": filters.query,
        "status": filters.status,
        "product": filters.product,
        "from": filters.date_from.isoformat() if filters.date_from else "",
        "to": filters.date_to.isoformat() if filters.date_to else "",
    }
    return await page(
        p,
        "bookings/list.html",
        "bookings",
        bookings=[(package, booked_quotes(package)) for package in rows],
        product_names=names,
        filters=filters,
        query=query,
        statuses=repository.BOOKING_STATUSES,
        products=products,
        pager=pager(p.url("bookings"), query, number, PER_PAGE, count),
        filtered=any(query.values()),
    )


@router.get("/{code}/{mode}/bookings/{booking_id}")
async def booking(booking_id: str, p: PartnerPage = Depends(partner_page)) -> Response:
    scope = Scope(p.partner.id, p.mode, p.now)
    async with p.services.database.reading() as session:
        try:
            package = await load_booking(session, scope, booking_id)
        except NotFound:
            raise not_found() from None
        quotes = booked_quotes(package)
        names = await repository.product_names(session, {q.product_version_id for q in quotes})
        cancellations = await repository.confirmed_cancellations(session, package.id)
        events, events_total = await repository.booking_events(
            session, p.partner.id, p.mode, package.id, TIMELINE_EVENTS
        )
        deliveries = await repository.booking_deliveries(
            session, p.partner.id, p.mode, [event.id for event in events], TIMELINE_DELIVERIES
        )
        messages_total, messages = await messaging.list_messages(
            session,
            p.partner.id,
            p.mode,
            booking=package.id,
            status=None,
            limit=TIMELINE_MESSAGES,
            offset=0,
        )
    refunds = {
        line["quote_id"]: line["refund_minor"]
        for cancellation in cancellations
        for line in cancellation.lines.get("quotes", [])
    }
    timeline = _timeline(p, events, deliveries, messages)
    return await page(
        p,
        "bookings/detail.html",
        "bookings",
        package=package,
        quotes=quotes,
        holder=package.policyholder,
        renewals=sorted(package.renewals, key=lambda r: (r.quote_id, r.sequence)),
        product_names=names,
        cancellations=cancellations,
        refunds=refunds,
        total_price=sum(q.price_minor for q in quotes if q.status != "CANCELLED"),
        total_refund=sum(refunds.values()),
        timeline=timeline,
        timeline_cut=(
            events_total > len(events)
            or len(deliveries) == TIMELINE_DELIVERIES
            or messages_total > len(messages)
        ),
        timeline_events=(len(events), events_total),
    )


def _timeline(
    p: PartnerPage,
    events: list[Event],
    deliveries: list[tuple[WebhookDelivery, WebhookEndpoint]],
    messages: list[Message],
) -> list[TimelineItem]:
    items = []
    by_event = {event.id: event for event in events}
    for event in events:
        items.append(
            TimelineItem(
                kind="event",
                at=event.occurred_at,
                title=event.type.replace("_", " ").capitalize(),
                detail=event.public_id,
                order=(event.occurred_at, event.id, 0, 0),
            )
        )
    for delivery, endpoint in deliveries:
        event = by_event[delivery.event_id]
        answer = f"HTTP {delivery.last_status_code}" if delivery.last_status_code else None
        items.append(
            TimelineItem(
                kind="delivery",
                at=delivery.created_at,
                title=f"Webhook {delivery.event_type} to {endpoint.url}",
                status=delivery.status,
                detail=", ".join(
                    part
                    for part in (f"{delivery.attempts} attempt(s)", answer, delivery.last_error)
                    if part
                ),
                url=p.url("webhooks", endpoint.public_id, "deliveries", delivery.public_id),
                order=(event.occurred_at, event.id, 1, delivery.id),
            )
        )
    by_public_id = {event.public_id: event for event in events}
    for message in messages:
        source = by_public_id.get(message.event_id or "")
        # After the event that caused it; on its own time when the event is not the booking's.
        order = (
            (source.occurred_at, source.id, 2, message.id)
            if source is not None
            else (message.scheduled_at, 0, 2, message.id)
        )
        channel = "E-mail" if message.channel == "email" else "SMS"
        items.append(
            TimelineItem(
                kind="message",
                at=message.created_at,
                title=f"{channel} {message.kind.replace('_', ' ')} to {message.recipient}",
                status=message.status,
                detail=message.error,
                url=p.url("messaging", "log", message.public_id),
                order=order,
            )
        )
    return sorted(items, key=lambda item: item.order)
