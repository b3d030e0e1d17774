"""The sandbox test clock: its time, moving it forward, and the events the move produced
(with their webhook deliveries). Live has no test clock: 404."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from sqlalchemy import func, select
from starlette.responses import Response

from coverline.catalog.definition import parse_duration
from coverline.dashboard.web import PartnerPage, not_found, page, partner_page, redirect
from coverline.events.models import Event
from coverline.kit.dates import parse_rfc3339
from coverline.renewals.service import run_due
from coverline.sandbox.service import (
    ahead,
    current_offset,
    out_of_calendar,
    refused_move,
    set_offset,
)
from coverline.webhooks.models import WebhookDelivery

router = APIRouter()
PATH = "/{code}/{mode}/sandbox"
PRESETS = [("P1D", "1 day"), ("P7D", "7 days"), ("P30D", "30 days"), ("P1M", "1 month")]
MAX_TRANSITIONS = 100_000
SHOWN_EVENTS = 100


def _sandbox(p: PartnerPage) -> None:
    if p.mode != "sandbox":
        raise not_found()


async def _clock_page(
    request: Request, p: PartnerPage, errors: dict[str, list[str]] | None = None
) -> Response:
    try:
        after: int | None = int(request.query_params.get("after", ""))
    except ValueError:
        after = None
    if after is not None and not 0 <= after < 2**63:
        # Event ids are 64-bit: no database compares with a number past them.
        after = None
    async with p.services.database.reading() as session:
        offset = await current_offset(session, p.partner.id)
        query = select(Event).where(Event.partner_id == p.partner.id, Event.mode == "sandbox")
        if after is not None:
            query = query.where(Event.id > after)
        events = list(await session.scalars(query.order_by(Event.id.desc()).limit(SHOWN_EVENTS)))
        counts: dict[int, dict[str, int]] = {}
        if events:
            rows = await session.execute(
                select(WebhookDelivery.event_id, WebhookDelivery.status, func.count())
                .where(WebhookDelivery.event_id.in_([e.id for e in events]))
                .group_by(WebhookDelivery.event_id, WebhookDelivery.status)
            )
            for event_id, status, count in rows.all():
                counts.setdefault(event_id, {})[status] = int(count)
    return await page(
        p,
        "sandbox.html",
        "sandbox",
        status_code=422 if errors else 200,
        clock_now=p.services.clock.now() + offset,
        offset=offset,
        presets=PRESETS,
        events=list(reversed(events)),
        delivery_counts=counts,
        after=after,
        errors=errors or {},
    )


@router.get(PATH)
async def clock(request: Request, p: PartnerPage = Depends(partner_page)) -> Response:
    _sandbox(p)
    return await _clock_page(request, p)


@router.post(PATH)
async def move_clock(request: Request, p: PartnerPage = Depends(partner_page)) -> Response:
    _sandbox(p)
    advance = p.form.get("advance").strip()
    to = p.form.get("to").strip()
    if bool(advance) == bool(to):
        return await _clock_page(
            request, p, {"advance": ["Give a duration or a date and time (one of the two)."]}
        )
    services = p.services
    async with services.database.transaction() as session:
        real_now = services.clock.now()
        offset = await current_offset(session, p.partner.id)
        current = real_now + offset
        try:
            if advance:
                target = ahead(current, parse_duration(advance))
            else:
                target = parse_rfc3339(to if len(to) != 16 else to + ":00Z")
        except ValueError:
            field = "advance" if advance else "to"
            message = (
                "Give an ISO 8601 duration such as P1D, P30D or PT12H."
                if advance
                else out_of_calendar(to if len(to) != 16 else to + ":00Z")
                or "Give a date and time such as 2030-01-31T09:00."
            )
            return await _clock_page(request, p, {field: [message]})
        refused = refused_move(target, current, real_now)
        if refused is not None:
            return await _clock_page(request, p, {"advance" if advance else "to": [refused]})
        last_event = await session.scalar(
            select(func.max(Event.id)).where(
                Event.partner_id == p.partner.id, Event.mode == "sandbox"
            )
        )
        await set_offset(session, p.partner.id, target - real_now, real_now)
        moved = 0
        while batch := await run_due(session, until=target, partner_id=p.partner.id):
            moved += len(batch)
            if moved > MAX_TRANSITIONS:
                break
    services.clocks.forget()
    return redirect(p.url("sandbox", after=str(last_event or 0), notice="clock-moved"))
