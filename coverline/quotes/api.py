"""Quote package endpoints (paths relative to /api/partners/{partner_code}/)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.kit.http import NoBody, PartnerRouter
from coverline.partners.deps import PartnerCall, partner_call
from coverline.quotes import service
from coverline.quotes.models import QuotePackage
from coverline.quotes.presenter import quote_package_json
from coverline.quotes.schemas import (
    AddQuotesIn,
    DeleteQuotesIn,
    QuotePackageIn,
    QuotePackageOut,
    QuotePackageUpdateIn,
)

router = PartnerRouter(tags=["quotes"])


async def render_package(
    call: PartnerCall, result: service.PackageResult | QuotePackage
) -> dict[str, Any]:
    if isinstance(result, service.PackageResult):
        package, slots, errors = result.package, result.slots, result.errors
    else:
        package, slots, errors = result, None, None
    definitions = await call.services.catalog.definitions(service.definitions_needed(package))
    return quote_package_json(
        package, definitions, call.services.settings.public_url, slots=slots, errors=errors
    )


@router.post(
    "/quotes/", status_code=201, response_model=QuotePackageOut, summary="Create a quote package"
)
async def create_quote(data: QuotePackageIn, call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        result = await service.create_package(session, call.services.catalog, call.scope, data)
        await session.flush()
        return 201, await render_package(call, result)

    return await call.write(work)


@router.get("/quotes/{package_id}/", response_model=QuotePackageOut, summary="Get a quote package")
async def get_quote(package_id: str, call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        package = await service.load_package(session, call.scope, package_id)
        return await render_package(call, package)

    return await call.read(work)


@router.patch(
    "/quotes/{package_id}/", response_model=QuotePackageOut, summary="Update a quote package"
)
async def update_quote(
    package_id: str, data: QuotePackageUpdateIn, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        package = await service.update_package(
            session, call.services.catalog, call.scope, package_id, data
        )
        return 200, await render_package(call, package)

    return await call.write(work)


@router.post(
    "/quotes/{package_id}/add/",
    response_model=QuotePackageOut,
    status_code=201,
    summary="Add quotes to a package",
)
async def add_quotes(
    package_id: str, data: AddQuotesIn, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        result = await service.add_quotes(
            session, call.services.catalog, call.scope, package_id, data
        )
        await session.flush()
        return 201, await render_package(call, result.package)

    return await call.write(work)


@router.post(
    "/quotes/{package_id}/delete/",
    response_model=QuotePackageOut,
    summary="Delete quotes from a package",
)
async def delete_quotes(
    package_id: str, data: DeleteQuotesIn, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        package = await service.delete_quotes(session, call.scope, package_id, data)
        return 200, await render_package(call, package)

    return await call.write(work)


@router.post(
    "/bookings/{package_id}/opt_out",
    status_code=204,
    summary="Record that the customer declined the offer",
)
async def opt_out(
    package_id: str, _body: NoBody | None = None, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        await service.opt_out(session, call.scope, package_id)
        return 204, None

    return await call.write(work)
