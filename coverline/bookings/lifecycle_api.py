"""A booking's lifecycle endpoints: priced modifications, cancellations, instalments (paths
relative to /api/partners/{partner_code}/, the ones XCover's client calls)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.bookings import cancellations, instalments, modifications
from coverline.bookings.api import renderer
from coverline.bookings.schemas import (
    BookingDiffOut,
    BookingUpdateOut,
    CancellationOut,
    InstalmentsOut,
)
from coverline.bookings.service import load_booking
from coverline.kit.dates import server_time
from coverline.kit.errors import Conflict
from coverline.kit.http import NoBody, PartnerRouter
from coverline.kit.money import format_money, json_number
from coverline.partners.deps import PartnerCall, partner_call

router = PartnerRouter(tags=["lifecycle"])


def _with_diffs(
    booking: dict[str, Any], diffs: dict[str, Decimal], currency: str
) -> dict[str, Any]:
    for quote in booking["quotes"]:
        diff = diffs.get(quote["id"], Decimal(0))
        quote["price_diff"] = json_number(diff)
        quote["price_diff_formatted"] = format_money(diff, currency)
    total = sum(diffs.values(), Decimal(0))
    booking["total_price_diff"] = json_number(total)
    booking["total_price_diff_formatted"] = format_money(total, currency)
    return booking


@router.patch(
    "/bookings/{package_id}/quote_for_update",
    response_model=BookingUpdateOut,
    summary="Price a change of a booking without applying it",
)
async def quote_for_update(
    package_id: str,
    data: modifications.BookingUpdateIn,
    call: PartnerCall = Depends(partner_call),
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        priced = await modifications.quote_for_update(
            session, call.services.catalog, call.scope, package_id, data
        )
        booking = await renderer(call)(priced.preview)
        body = _with_diffs(booking, priced.price_diffs, priced.preview.currency)
        body["update_id"] = priced.update.id
        body["update_expires_at"] = server_time(priced.update.expires_at)
        return 200, body

    return await call.write(work)


@router.post(
    "/bookings/{package_id}/confirm_update/{update_id}/",
    response_model=BookingDiffOut,
    status_code=201,
    summary="Apply a priced change",
)
async def confirm_update(
    package_id: str,
    update_id: str,
    _body: NoBody | None = None,
    call: PartnerCall = Depends(partner_call),
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        booking, diffs = await modifications.confirm_update(
            session, call.services.catalog, call.scope, package_id, update_id, renderer(call)
        )
        return 201, _with_diffs(dict(booking), diffs, booking["currency"])

    return await call.write(work)


@router.post(
    "/bookings/{package_id}/cancel",
    response_model=CancellationOut,
    summary="Cancel a booking, or preview the refunds",
)
async def cancel(
    package_id: str,
    data: cancellations.CancelIn,
    call: PartnerCall = Depends(partner_call),
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        render = renderer(call)
        outcome = await cancellations.cancel(
            session, call.services.catalog, call.scope, package_id, data, render
        )
        booking = outcome.booking or await render(outcome.package)
        return 200, cancellations.cancellation_json(outcome, booking)

    return await call.write(work)


@router.post(
    "/bookings/{package_id}/confirm_cancellation/{cancellation_id}/",
    response_model=CancellationOut,
    summary="Carry out a previewed cancellation",
)
async def confirm_cancellation(
    package_id: str,
    cancellation_id: str,
    _body: NoBody | None = None,
    call: PartnerCall = Depends(partner_call),
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        outcome = await cancellations.confirm(
            session, call.scope, package_id, cancellation_id, renderer(call)
        )
        assert outcome.booking is not None  # a confirmed cancellation has taken place
        return 200, cancellations.cancellation_json(outcome, outcome.booking)

    return await call.write(work)


@router.get(
    "/bookings/{package_id}/instalments/",
    response_model=InstalmentsOut,
    summary="The instalment schedules",
)
async def get_instalments(package_id: str, call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        package = await load_booking(session, call.scope, package_id)
        schedules = await instalments.load_schedules(session, package.id)
        definitions = await call.services.catalog.definitions(
            {quote.product_version_id for quote in package.quotes}
        )
        return instalments.instalments_json(package, schedules, definitions)

    return await call.read(work)


@router.post(
    "/bookings/{package_id}/instalments/",
    status_code=204,
    summary="Report instalment payments (PAID or FAILED)",
)
async def update_instalments(
    package_id: str,
    data: instalments.InstalmentPaymentsIn,
    call: PartnerCall = Depends(partner_call),
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        package = await load_booking(session, call.scope, package_id, lock=True)
        if package.status == "CANCELLED":
            raise Conflict(f"Booking {package_id} is cancelled.")
        schedules = await instalments.load_schedules(session, package.id, lock=True)
        instalments.record_payments(package, schedules, data, call.scope.now)
        return 204, None

    return await call.write(work)
