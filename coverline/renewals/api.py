"""Renewal endpoints as XCover's client calls them (paths under /api/partners/{code}/)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.bookings.api import renderer
from coverline.kit.http import NoBody, PartnerRouter
from coverline.partners.deps import PartnerCall, partner_call
from coverline.quotes.schemas import BookingOut
from coverline.renewals import service
from coverline.renewals.schemas import BookingRenewalOut, BookingRenewalQuoteOut

router = PartnerRouter(tags=["renewals"])


@router.patch(
    "/renewals/{package_id}/quote_for_renewal/",
    response_model=BookingRenewalQuoteOut,
    summary="Price the next period with the product's current version",
)
async def quote_for_renewal(
    package_id: str, _body: NoBody | None = None, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        body = await service.quote_for_renewal(
            session, call.services.catalog, call.scope, package_id, renderer(call)
        )
        return 200, body

    return await call.write(work)


@router.post(
    "/renewals/{package_id}/confirm/{renewal_id}/",
    response_model=BookingRenewalOut,
    summary="Pay a quoted renewal",
)
async def confirm_renewal(
    package_id: str,
    renewal_id: str,
    _body: NoBody | None = None,
    call: PartnerCall = Depends(partner_call),
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        body = await service.confirm(
            session, call.services.catalog, call.scope, package_id, renewal_id, renderer(call)
        )
        return 200, body

    return await call.write(work)


@router.post(
    "/renewals/{package_id}/opt_out/", response_model=BookingOut, summary="Stop renewing a policy"
)
async def renewal_opt_out(
    package_id: str, _body: NoBody | None = None, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        return 200, await service.opt_out(session, call.scope, package_id, renderer(call))

    return await call.write(work)
