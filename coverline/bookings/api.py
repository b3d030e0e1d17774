"""Booking endpoints (paths relative to /api/partners/{partner_code}/)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.bookings import service
from coverline.bookings.schemas import BookingDiffOut
from coverline.kit.http import MAX_OFFSET, NoBody, PartnerRouter
from coverline.partners.deps import PartnerCall, partner_call
from coverline.quotes.models import QuotePackage
from coverline.quotes.presenter import booking_json
from coverline.quotes.schemas import (
    BookingIn,
    BookingListOut,
    BookingOut,
    BookingPatchIn,
    InstantBookingIn,
)
from coverline.quotes.service import definitions_needed

router = PartnerRouter(tags=["bookings"])


def renderer(call: PartnerCall, *, price_diff: bool = False) -> service.Render:
    async def render(package: QuotePackage) -> dict[str, Any]:
        definitions = await call.services.catalog.definitions(definitions_needed(package))
        return booking_json(
            package,
            definitions,
            call.services.settings.public_url,
            call.scope.now,
            price_diff=price_diff,
        )

    return render


@router.post("/instant_booking/", response_model=BookingOut, summary="Quote and book in one call")
async def instant_booking(
    data: InstantBookingIn, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        body = await service.instant_booking(
            session, call.services.catalog, call.scope, data, renderer(call)
        )
        return 200, body

    return await call.write(work)


@router.get("/bookings/", response_model=BookingListOut, summary="List bookings")
async def list_bookings(
    call: PartnerCall = Depends(partner_call),
    limit: int = Query(default=20, ge=1, le=100),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
) -> Response:
    render = renderer(call)

    async def work(session: AsyncSession) -> dict[str, Any]:
        page = await service.list_bookings(session, call.scope, limit=limit, offset=offset)
        url = call.request.url
        base = str(url.remove_query_params(["limit", "offset"]))
        next_url = (
            f"{base}?limit={limit}&offset={offset + limit}" if offset + limit < page.count else None
        )
        if offset <= 0:
            previous_url = None
        elif offset - limit <= 0:
            previous_url = f"{base}?limit={limit}"
        else:
            previous_url = f"{base}?limit={limit}&offset={offset - limit}"
        return {
            "count": page.count,
            "next": next_url,
            "previous": previous_url,
            "results": [await render(package) for package in page.bookings],
        }

    return await call.read(work)


@router.post("/bookings/{package_id}/", response_model=BookingOut, summary="Book a quote package")
async def book(
    package_id: str, data: BookingIn, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        body = await service.book(
            session, call.services.catalog, call.scope, package_id, data, renderer(call)
        )
        return 200, body

    return await call.write(work)


@router.get("/bookings/{package_id}/", response_model=BookingOut, summary="Get a booking")
async def get_booking(package_id: str, call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        package = await service.load_booking(session, call.scope, package_id)
        return await renderer(call)(package)

    return await call.read(work)


@router.patch(
    "/bookings/{package_id}/",
    response_model=BookingDiffOut,
    summary="Modify a booking directly (policyholder)",
)
async def modify_booking(
    package_id: str, data: BookingPatchIn, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        body = await service.modify(
            session, call.scope, package_id, data, renderer(call, price_diff=True)
        )
        return 200, body

    return await call.write(work)


@router.put(
    "/bookings/{package_id}/confirm",
    response_model=BookingOut,
    status_code=201,
    summary="Confirm payment",
)
async def confirm_booking(
    package_id: str, _body: NoBody | None = None, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        body = await service.confirm_payment(
            session, call.services.catalog, call.scope, package_id, renderer(call)
        )
        return 201, body

    return await call.write(work)
