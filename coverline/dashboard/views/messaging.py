"""Customer messaging: channels and events on or off, the sender, templates with a live
preview, and the message log. Everything goes through `coverline.messaging.service`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.responses import Response

from coverline.dashboard.web import (
    Form,
    PartnerPage,
    field_errors,
    not_found,
    page,
    page_number,
    pager,
    partner_page,
    redirect,
    render,
)
from coverline.kit.errors import CoverlineError, NotFound
from coverline.messaging import service
from coverline.messaging.schemas import SettingsIn, TemplateIn
from coverline.messaging.templates import BUILT_IN_LANGUAGE, CHANNELS, EMAIL, KINDS, VARIABLES

router = APIRouter()
PREFIX = "/{code}/{mode}/messaging"
PER_PAGE = 25
KIND_NAMES = {
    "purchase": "Purchase",
    "activation": "Activation (cover starts)",
    "modification": "Change",
    "cancellation": "Cancellation",
    "renewal_notification": "Renewal notice",
    "renewal_due": "Renewal due",
    "renewal_expired": "Renewal expired",
    "renewal_success": "Renewal paid",
}
CHANNEL_NAMES = {"email": "E-mail", "sms": "SMS"}


def _who(p: PartnerPage) -> tuple[int, str]:
    return p.partner.id, p.mode


def _settings_values(form: Form, p: PartnerPage) -> dict[str, Any]:
    def text(name: str) -> str | None:
        return form.get(name).strip() or None

    return {
        "enabled": form.get("enabled") == "on",
        "channels": [c for c in form.getlist("channels") if c in CHANNELS],
        "events": [k for k in form.getlist("events") if k in KINDS],
        "sender_name": text("sender_name"),
        "sender_email": text("sender_email"),
        "reply_to": text("reply_to"),
        "support_url": text("support_url"),
        "brand_colour": form.get("brand_colour").strip() or "#1a56db",
        "sms_sender": text("sms_sender"),
        "send_in_sandbox": p.mode == "sandbox" and form.get("send_in_sandbox") == "on",
    }


async def _messaging_page(
    p: PartnerPage,
    *,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    partner_id, mode = _who(p)
    async with p.services.database.reading() as session:
        config = await service.load_config(session, partner_id, mode)
        listed = await service.list_templates(session, partner_id, mode)
        failed_count, failed = await service.list_messages(
            session, partner_id, mode, booking=None, status=service.FAILED, limit=5, offset=0
        )
    current = values or service.settings_json(config)
    return await page(
        p,
        "messaging/index.html",
        "messaging",
        status_code=422 if errors else 200,
        config=config,
        settings=current,
        templates=listed,
        failed=failed,
        failed_count=failed_count,
        errors=errors or {},
        kinds=KINDS,
        kind_names=KIND_NAMES,
        channels=CHANNELS,
        channel_names=CHANNEL_NAMES,
    )


@router.get(PREFIX)
async def messaging(p: PartnerPage = Depends(partner_page)) -> Response:
    return await _messaging_page(p)


@router.post(PREFIX)
async def save_settings(p: PartnerPage = Depends(partner_page)) -> Response:
    values = _settings_values(p.form, p)
    try:
        data = SettingsIn.model_validate(values)
        async with p.services.database.transaction() as session:
            await service.save_settings(session, *_who(p), data, p.services.clock.now())
    except (ValidationError, CoverlineError) as exc:
        return await _messaging_page(p, errors=field_errors(exc), values=values)
    return redirect(p.url("messaging", notice="saved"))


# ------------------------------------------------------------------------------ templates


def _address(event: str, channel: str, language: str) -> tuple[str, str, str]:
    if event not in KINDS or channel not in CHANNELS or len(language) > 10:
        raise not_found()
    return event, channel, language


def _draft(form: Form, channel: str) -> dict[str, Any]:
    def part(name: str) -> str | None:
        value = form.get(name).replace("\r\n", "\n")
        return value if value.strip() else None

    return {
        "subject": part("subject") if channel == EMAIL else None,
        "text": form.get("text").replace("\r\n", "\n"),
        "html": part("html") if channel == EMAIL else None,
    }


async def _template_source(p: PartnerPage, address: tuple[str, str, str]) -> dict[str, Any]:
    event, channel, language = address
    async with p.services.database.reading() as session:
        listed = await service.list_templates(session, *_who(p))
    found = next(
        (
            t
            for t in listed
            if (t["event"], t["channel"], t["language"]) == (event, channel, language)
        ),
        None,
    )
    if found is None:
        if language == BUILT_IN_LANGUAGE:
            raise not_found()
        # A language without a template of its own yet starts from the built-in one.
        found = next(
            t
            for t in listed
            if (t["event"], t["channel"], t["language"]) == (event, channel, BUILT_IN_LANGUAGE)
        )
        found = {**found, "language": language, "source": "built_in"}
    return found


async def _preview(
    p: PartnerPage, address: tuple[str, str, str], draft: dict[str, Any] | None, booking: str
) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    try:
        async with p.services.database.reading() as session:
            shown = await service.preview(
                session, *_who(p), address, draft, booking.strip() or None
            )
    except NotFound:
        return None, {"booking": [f"There is no {p.mode} booking {booking.strip()}."]}
    except (ValidationError, CoverlineError) as exc:
        return None, field_errors(exc)
    return shown, {}


async def _editor(
    p: PartnerPage,
    address: tuple[str, str, str],
    *,
    draft: dict[str, Any] | None = None,
    booking: str = "",
    errors: dict[str, list[str]] | None = None,
) -> Response:
    template = await _template_source(p, address)
    shown, preview_errors = await _preview(p, address, draft, booking)
    event, channel, language = address
    return await page(
        p,
        "messaging/template.html",
        "messaging",
        status_code=422 if errors else 200,
        source=template,
        draft=draft or template,
        event=event,
        channel=channel,
        language=language,
        booking=booking,
        preview=shown,
        preview_errors=preview_errors,
        errors=errors or {},
        variables=VARIABLES,
        kind_names=KIND_NAMES,
        channel_names=CHANNEL_NAMES,
    )


TEMPLATE = PREFIX + "/templates/{event}/{channel}/{language}"


@router.get(TEMPLATE)
async def template_page(
    request: Request,
    event: str,
    channel: str,
    language: str,
    p: PartnerPage = Depends(partner_page),
) -> Response:
    address = _address(event, channel, language)
    return await _editor(p, address, booking=request.query_params.get("booking", "")[:64])


@router.post(TEMPLATE)
async def save_template(
    event: str, channel: str, language: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    address = _address(event, channel, language)
    draft = _draft(p.form, channel)
    booking = p.form.get("booking")[:64]
    if p.form.get("action") == "preview":
        return await _editor(p, address, draft=draft, booking=booking)
    try:
        async with p.services.database.transaction() as session:
            await service.save_template(
                session,
                *_who(p),
                address,
                TemplateIn.model_validate(draft),
                p.services.clock.now(),
            )
    except (ValidationError, CoverlineError) as exc:
        return await _editor(p, address, draft=draft, booking=booking, errors=field_errors(exc))
    return redirect(p.url("messaging", "templates", event, channel, language, notice="saved"))


@router.post(TEMPLATE + "/preview")
async def live_preview(
    event: str, channel: str, language: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    """The preview alone, for the editor's live preview (htmx swaps it in as one types)."""
    address = _address(event, channel, language)
    shown, errors = await _preview(p, address, _draft(p.form, channel), p.form.get("booking"))
    return render(
        "messaging/preview.html",
        {"preview": shown, "preview_errors": errors, "channel": channel},
    )


@router.post(TEMPLATE + "/delete")
async def delete_template(
    event: str, channel: str, language: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    address = _address(event, channel, language)
    try:
        async with p.services.database.transaction() as session:
            await service.delete_template(session, *_who(p), address)
    except (NotFound, CoverlineError):
        raise not_found() from None
    return redirect(p.url("messaging", notice="deleted"))


# ------------------------------------------------------------------------------ the log


@router.get(PREFIX + "/log")
async def message_log(request: Request, p: PartnerPage = Depends(partner_page)) -> Response:
    status = request.query_params.get("status", "")
    if status not in service.STATUSES:
        status = ""
    booking = request.query_params.get("booking", "").strip()[:64]
    number = page_number(request.query_params.get("page"))
    async with p.services.database.reading() as session:
        count, messages = await service.list_messages(
            session,
            *_who(p),
            booking=booking or None,
            status=status or None,
            limit=PER_PAGE,
            offset=(number - 1) * PER_PAGE,
        )
    query = {"status": status, "booking": booking}
    return await page(
        p,
        "messaging/log.html",
        "messaging",
        messages=messages,
        statuses=service.STATUSES,
        status=status,
        booking=booking,
        pager=pager(p.url("messaging", "log"), query, number, PER_PAGE, count),
        kind_names=KIND_NAMES,
        channel_names=CHANNEL_NAMES,
    )


@router.get(PREFIX + "/log/{message_id}")
async def message_page(message_id: str, p: PartnerPage = Depends(partner_page)) -> Response:
    try:
        async with p.services.database.reading() as session:
            message = await service.get_message(session, *_who(p), message_id)
    except NotFound:
        raise not_found() from None
    return await page(
        p,
        "messaging/message.html",
        "messaging",
        message=message,
        kind_names=KIND_NAMES,
        channel_names=CHANNEL_NAMES,
    )
