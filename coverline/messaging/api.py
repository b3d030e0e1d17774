"""Messaging endpoints (paths relative to /api/partners/{partner_code}/), per mode: settings,
templates and their preview, the message log, and XCover's `send_email`."""

from __future__ import annotations

from typing import Any

from fastapi import Body, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.kit.http import MAX_OFFSET, NoBody, PartnerRouter
from coverline.messaging import service
from coverline.messaging.schemas import (
    MessageListOut,
    MessageOut,
    PreviewIn,
    PreviewOut,
    ResentEmailOut,
    SendEmailIn,
    SettingsIn,
    SettingsOut,
    SettingsPatch,
    TemplateIn,
    TemplateListOut,
    TemplateOut,
)
from coverline.messaging.templates import VARIABLES
from coverline.partners.deps import PartnerCall, partner_call

router = PartnerRouter(tags=["messaging"])


def _who(call: PartnerCall) -> tuple[int, str]:
    return call.principal.partner_id, call.principal.mode


@router.get(
    "/messaging/settings",
    response_model=SettingsOut,
    summary="Messaging settings of the calling mode",
)
async def get_settings(call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        return service.settings_json(await service.load_config(session, *_who(call)))

    return await call.read(work)


@router.put(
    "/messaging/settings", response_model=SettingsOut, summary="Replace the messaging settings"
)
async def put_settings(data: SettingsIn, call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        config = await service.save_settings(session, *_who(call), data, call.services.clock.now())
        return 200, service.settings_json(config)

    return await call.write(work)


@router.patch(
    "/messaging/settings", response_model=SettingsOut, summary="Change some messaging settings"
)
async def patch_settings(
    data: SettingsPatch, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        config = await service.patch_settings(session, *_who(call), data, call.services.clock.now())
        return 200, service.settings_json(config)

    return await call.write(work)


@router.get(
    "/messaging/templates/",
    response_model=TemplateListOut,
    summary="Templates: built-in and the partner's own",
)
async def list_templates(call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        listed = await service.list_templates(session, *_who(call))
        return {"count": len(listed), "variables": VARIABLES, "results": listed}

    return await call.read(work)


@router.put(
    "/messaging/templates/{event}/{channel}/{language}",
    response_model=TemplateOut,
    summary="Save a template of your own (checked: unknown variables are refused)",
)
async def put_template(
    event: str,
    channel: str,
    language: str,
    data: TemplateIn,
    call: PartnerCall = Depends(partner_call),
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        saved = await service.save_template(
            session, *_who(call), (event, channel, language), data, call.services.clock.now()
        )
        return 200, saved

    return await call.write(work)


@router.delete(
    "/messaging/templates/{event}/{channel}/{language}",
    status_code=204,
    summary="Delete a template of your own (back to the built-in one)",
)
async def delete_template(
    event: str,
    channel: str,
    language: str,
    _body: NoBody | None = None,
    call: PartnerCall = Depends(partner_call),
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        await service.delete_template(session, *_who(call), (event, channel, language))
        return 204, None

    return await call.write(work)


@router.post(
    "/messaging/templates/{event}/{channel}/{language}/preview",
    response_model=PreviewOut,
    summary="Render a template with sample data or a booking's",
)
async def preview_template(
    event: str,
    channel: str,
    language: str,
    data: PreviewIn | None = Body(default=None),
    call: PartnerCall = Depends(partner_call),
) -> Response:
    request = data or PreviewIn()

    async def work(session: AsyncSession) -> dict[str, Any]:
        return await service.preview(
            session, *_who(call), (event, channel, language), request.draft(), request.booking
        )

    return await call.read(work)


@router.get(
    "/messages/", response_model=MessageListOut, summary="Messages sent (or stored) for customers"
)
async def list_messages(
    call: PartnerCall = Depends(partner_call),
    booking: str | None = Query(default=None, max_length=64),
    status: str | None = Query(default=None, max_length=16),
    limit: int = Query(default=20, ge=1, le=100),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        count, messages = await service.list_messages(
            session, *_who(call), booking=booking, status=status, limit=limit, offset=offset
        )
        return {"count": count, "results": [service.message_json(m) for m in messages]}

    return await call.read(work)


@router.get("/messages/{message_id}/", response_model=MessageOut, summary="One message")
async def get_message(message_id: str, call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        return service.message_json(await service.get_message(session, *_who(call), message_id))

    return await call.read(work)


@router.post(
    "/bookings/{package_id}/send_email",
    response_model=ResentEmailOut,
    status_code=202,
    summary="Send the customer's e-mail again",
)
async def send_email(
    package_id: str,
    data: SendEmailIn | None = Body(default=None),
    call: PartnerCall = Depends(partner_call),
) -> Response:
    event = data.event if data is not None else None

    async def work(session: AsyncSession) -> tuple[int, Any]:
        message = await service.resend_email(session, *_who(call), package_id, event)
        return 202, {"id": message.public_id, "event": message.kind, "status": message.status}

    return await call.write(work)
