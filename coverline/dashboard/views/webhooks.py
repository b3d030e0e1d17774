"""Webhooks: MyCover's flow (the on/off switch, a URL, Save), then per endpoint its format,
signature scheme and event filter, the signing secret, test events, the delivery log,
redelivery and recovery."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.dashboard import repository
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
)
from coverline.events.models import Event
from coverline.events.service import EventType
from coverline.kit import ids
from coverline.kit.dates import in_range, server_time
from coverline.kit.errors import CoverlineError, NotFound, ValidationFailed
from coverline.webhooks import formats, service, signing
from coverline.webhooks.models import WebhookEndpoint
from coverline.webhooks.network import check_name
from coverline.webhooks.schemas import EndpointIn, EndpointPatch

router = APIRouter()
PREFIX = "/{code}/{mode}/webhooks"
STATUSES = ("pending", "delivering", "succeeded", "failed")
PER_PAGE = 20
FORMAT_CHOICES = [("xcover", "XCover"), ("mycover", "MyCover.ai")]
SIGNATURE_CHOICES = [
    ("xcover", "XCover: HTTP Signature (HMAC) with the endpoint's key"),
    ("mycover", "MyCover.ai: x-mycoverai-signature (HMAC-SHA512) with your secret API key"),
    ("standard", "Standard Webhooks: webhook-signature with the whsec_ secret"),
]


def _scope(p: PartnerPage) -> service.EndpointScope:
    return service.EndpointScope(p.partner.id, p.mode, p.now)


def _allow_private(p: PartnerPage) -> bool:
    return p.services.settings.webhooks_allow_private_networks


async def _check_name(p: PartnerPage, url: object) -> None:
    if url is not None:
        await check_name(
            str(url), allow_private=_allow_private(p), resolver=p.services.webhook_resolver
        )


def _events_choice(form: Form, fmt: str) -> list[str] | None:
    if form.get("events_filter", "all") != "some":
        return None
    known = set(formats.EVENT_NAMES[fmt])
    return [name for name in form.getlist("events") if name in known] or []


async def _index(
    p: PartnerPage,
    *,
    errors: dict[str, list[str]] | None = None,
    new: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    async with p.services.database.reading() as session:
        endpoints = await service.list_endpoints(session, _scope(p))
        health = await repository.endpoint_health(session, [e.id for e in endpoints])
    return await page(
        p,
        "webhooks/index.html",
        "webhooks",
        status_code=status,
        endpoints=endpoints,
        health=health,
        errors=errors or {},
        new=new or {"enabled": True, "url": "", "format": "xcover"},
        format_choices=FORMAT_CHOICES,
    )


@router.get(PREFIX)
async def webhooks_index(p: PartnerPage = Depends(partner_page)) -> Response:
    return await _index(p)


@router.post(PREFIX)
async def create_endpoint(p: PartnerPage = Depends(partner_page)) -> Response:
    form = p.form
    new = {
        "enabled": form.get("enabled") == "on",
        "url": form.get("url").strip(),
        "format": form.get("format", "xcover"),
        "description": form.get("description").strip() or None,
    }
    try:
        data = EndpointIn.model_validate(new)
        await _check_name(p, data.url)
        async with p.services.database.transaction() as session:
            endpoint = await service.create_endpoint(
                session, p.services.box, _scope(p), data, allow_private=_allow_private(p)
            )
    except (ValidationError, CoverlineError) as exc:
        return await _index(p, errors=field_errors(exc), new=new, status=422)
    return redirect(p.url("webhooks", endpoint.public_id, notice="created"))


@router.post(PREFIX + "/{endpoint_id}/quick")
async def quick_save(endpoint_id: str, p: PartnerPage = Depends(partner_page)) -> Response:
    """The switch and URL of MyCover's settings form, for one endpoint."""
    patch = {"enabled": p.form.get("enabled") == "on", "url": p.form.get("url").strip()}
    try:
        data = EndpointPatch.model_validate(patch)
        await _check_name(p, data.url)
        async with p.services.database.transaction() as session:
            await service.update_endpoint(
                session, _scope(p), endpoint_id, data, allow_private=_allow_private(p)
            )
    except NotFound:
        raise not_found() from None
    except (ValidationError, CoverlineError) as exc:
        errors = {f"{endpoint_id}-{k}": v for k, v in field_errors(exc).items()}
        return await _index(p, errors=errors, status=422)
    return redirect(p.url("webhooks", notice="saved"))


async def _endpoint(p: PartnerPage, session: AsyncSession, endpoint_id: str) -> WebhookEndpoint:
    try:
        return await service.get_endpoint(session, _scope(p), endpoint_id)
    except NotFound:
        raise not_found() from None


async def _endpoint_page(
    request: Request,
    p: PartnerPage,
    endpoint_id: str,
    *,
    errors: dict[str, list[str]] | None = None,
    secret: dict[str, Any] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    status_filter = request.query_params.get("status", "")
    if status_filter not in STATUSES:
        status_filter = ""
    number = page_number(request.query_params.get("page"))
    async with p.services.database.reading() as session:
        endpoint = await _endpoint(p, session, endpoint_id)
        count, rows = await service.list_deliveries(
            session,
            endpoint,
            status=status_filter or None,
            limit=PER_PAGE,
            offset=(number - 1) * PER_PAGE,
        )
        health = await repository.endpoint_health(session, [endpoint.id])
    base = p.url("webhooks", endpoint.public_id)
    return await page(
        p,
        "webhooks/endpoint.html",
        "webhooks",
        status_code=status,
        endpoint=endpoint,
        deliveries=rows,
        pager=pager(base, {"status": status_filter}, number, PER_PAGE, count),
        status_filter=status_filter,
        statuses=STATUSES,
        health=health.get(endpoint.id),
        errors=errors or {},
        secret=secret,
        message=message,
        format_choices=FORMAT_CHOICES,
        signature_choices=SIGNATURE_CHOICES,
        event_names=formats.EVENT_NAMES[endpoint.format],
        default_since=(datetime.now(UTC).replace(second=0, microsecond=0)).strftime(
            "%Y-%m-%dT%H:%M"
        ),
    )


@router.get(PREFIX + "/{endpoint_id}")
async def endpoint_page(
    request: Request, endpoint_id: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    return await _endpoint_page(request, p, endpoint_id)


@router.post(PREFIX + "/{endpoint_id}")
async def save_endpoint(
    request: Request, endpoint_id: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    form = p.form
    fmt = form.get("format")
    async with p.services.database.reading() as session:
        current = await _endpoint(p, session, endpoint_id)
    changes: dict[str, Any] = {
        "enabled": form.get("enabled") == "on",
        "url": form.get("url").strip(),
        "description": form.get("description").strip() or None,
        "format": fmt,
        "signature": form.get("signature"),
    }
    target_format = fmt if fmt in formats.FORMATS else current.format
    # Event names differ between formats: a format change starts again from "every event".
    changes["events"] = None if fmt != current.format else _events_choice(form, target_format)
    try:
        data = EndpointPatch.model_validate(changes)
        if changes["events"] == []:
            raise ValidationFailed(errors={"events": ["Choose at least one event, or all events."]})
        await _check_name(p, data.url)
        async with p.services.database.transaction() as session:
            await service.update_endpoint(
                session, _scope(p), endpoint_id, data, allow_private=_allow_private(p)
            )
    except NotFound:
        raise not_found() from None
    except (ValidationError, CoverlineError) as exc:
        return await _endpoint_page(request, p, endpoint_id, errors=field_errors(exc), status=422)
    return redirect(p.url("webhooks", endpoint_id, notice="saved"))


@router.post(PREFIX + "/{endpoint_id}/secret")
async def reveal_secret(
    request: Request, endpoint_id: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    async with p.services.database.reading() as session:
        endpoint = await _endpoint(p, session, endpoint_id)
        try:
            material = await service.signing_material(session, p.services.box, endpoint)
        except CoverlineError as exc:
            return await _endpoint_page(
                request, p, endpoint_id, errors=field_errors(exc), status=422
            )
    return await _endpoint_page(request, p, endpoint_id, secret=material)


@router.post(PREFIX + "/{endpoint_id}/rotate")
async def rotate_secret(
    request: Request, endpoint_id: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    try:
        async with p.services.database.transaction() as session:
            endpoint = await service.rotate_secret(session, p.services.box, _scope(p), endpoint_id)
            material = await service.signing_material(session, p.services.box, endpoint)
    except NotFound:
        raise not_found() from None
    return await _endpoint_page(
        request,
        p,
        endpoint_id,
        secret=material,
        message="The signing secret is rotated. The old secret also signs for 24 hours."
        if endpoint.signature != signing.MYCOVER
        else "A new endpoint secret is made, but this endpoint signs with your secret API key "
        "(MyCover.ai scheme): rotate that on the API keys page.",
    )


@router.post(PREFIX + "/{endpoint_id}/test")
async def send_test(endpoint_id: str, p: PartnerPage = Depends(partner_page)) -> Response:
    async with p.services.database.transaction() as session:
        endpoint = await _endpoint(p, session, endpoint_id)
        event = Event(
            public_id=ids.event_id(),
            partner_id=endpoint.partner_id,
            mode=endpoint.mode,
            type=EventType.WEBHOOK_TEST.value,
            resource_type="webhook_endpoint",
            resource_id=endpoint.public_id,
            payload={
                "endpoint_id": endpoint.public_id,
                "message": "A test event from Coverline.",
                "sent_at": server_time(p.now),
            },
            occurred_at=p.now,
        )
        await service.send_test(session, endpoint, event)
    return redirect(p.url("webhooks", endpoint_id, notice="test-sent"))


def _since(text: str) -> datetime:
    """A `datetime-local` value, read as UTC (the page says so), or an RFC 3339 time."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return in_range(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))
    except ValueError:
        raise ValidationFailed(
            errors={"since": ["Give a date and time, e.g. 2030-01-31T09:00."]}
        ) from None


@router.post(PREFIX + "/{endpoint_id}/recover")
async def recover(
    request: Request, endpoint_id: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    try:
        since = _since(p.form.get("since"))
        async with p.services.database.transaction() as session:
            endpoint = await _endpoint(p, session, endpoint_id)
            # Real time: the dispatcher sends what is due by the real clock, also in sandbox.
            count = await service.recover(session, endpoint, since, datetime.now(UTC))
    except ValidationFailed as exc:
        return await _endpoint_page(request, p, endpoint_id, errors=field_errors(exc), status=422)
    plural = "delivery" if count == 1 else "deliveries"
    return await _endpoint_page(
        request,
        p,
        endpoint_id,
        message=f"{count} failed {plural} since {since:%Y-%m-%d %H:%M} UTC queued again.",
    )


@router.post(PREFIX + "/{endpoint_id}/delete")
async def delete_endpoint(endpoint_id: str, p: PartnerPage = Depends(partner_page)) -> Response:
    try:
        async with p.services.database.transaction() as session:
            await service.delete_endpoint(session, _scope(p), endpoint_id)
    except NotFound:
        raise not_found() from None
    return redirect(p.url("webhooks", notice="deleted"))


@router.get(PREFIX + "/{endpoint_id}/deliveries/{delivery_id}")
async def delivery_page(
    endpoint_id: str, delivery_id: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    async with p.services.database.reading() as session:
        endpoint = await _endpoint(p, session, endpoint_id)
        try:
            delivery, event, attempts = await service.get_delivery(session, endpoint, delivery_id)
        except NotFound:
            raise not_found() from None
        stored = await service.stored_body(session, delivery)
    body = formats.sent_body(
        stored,
        endpoint.format,
        delivery.event_type,
        delivery.part,
        event.type,
        event.payload,
    )
    return await page(
        p,
        "webhooks/delivery.html",
        "webhooks",
        endpoint=endpoint,
        delivery=delivery,
        event=event,
        attempts=list(reversed(attempts)),
        body=repository.pretty_json(body),
    )


@router.post(PREFIX + "/{endpoint_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(
    endpoint_id: str, delivery_id: str, p: PartnerPage = Depends(partner_page)
) -> Response:
    delivery_url = p.url("webhooks", endpoint_id, "deliveries", delivery_id)
    try:
        async with p.services.database.transaction() as session:
            endpoint = await _endpoint(p, session, endpoint_id)
            await service.redeliver(session, endpoint, delivery_id, datetime.now(UTC))
    except NotFound:
        raise not_found() from None
    except ValidationFailed:
        return redirect(delivery_url)
    return redirect(delivery_url + "?notice=redelivered")
