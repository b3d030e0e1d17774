"""Webhook endpoints, their deliveries and attempts (paths under /api/partners/{code}/)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response

from coverline.events.models import Event
from coverline.events.service import EventType
from coverline.kit import ids
from coverline.kit.dates import in_range, server_time
from coverline.kit.errors import ValidationFailed
from coverline.kit.http import MAX_OFFSET, NoBody, PartnerRouter
from coverline.partners.deps import PartnerCall, partner_call
from coverline.webhooks import service
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from coverline.webhooks.network import check_name
from coverline.webhooks.schemas import (
    DeliveryDetailOut,
    DeliveryListOut,
    DeliveryOut,
    EndpointIn,
    EndpointListOut,
    EndpointOut,
    EndpointPatch,
    EndpointSecretOut,
    EndpointWithSecretOut,
    RecoverIn,
    RecoveryOut,
    RedeliveryOut,
    RotatedEndpointOut,
)

router = PartnerRouter(tags=["webhooks"])


def _time(value: Any) -> str | None:
    return server_time(value) if value is not None else None


def endpoint_json(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.public_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "events": endpoint.events,
        "format": endpoint.format,
        "signature": endpoint.signature,
        "mode": endpoint.mode,
        "retry_schedule": endpoint.retry_schedule,
        "timeout_seconds": endpoint.timeout_seconds,
        "max_concurrency": endpoint.max_concurrency,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": _time(endpoint.failing_since),
        "created_at": server_time(endpoint.created_at),
        "updated_at": server_time(endpoint.updated_at),
    }


def delivery_json(delivery: WebhookDelivery, event: Event) -> dict[str, Any]:
    return {
        "id": delivery.public_id,
        "event": delivery.event_type,
        "event_id": event.public_id,
        "resource_id": event.resource_id,
        "request_id": event.request_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": _time(delivery.next_attempt_at)
        if delivery.status == "pending"
        else None,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": server_time(delivery.created_at),
        "completed_at": _time(delivery.completed_at),
    }


def attempt_json(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "attempted_at": server_time(attempt.attempted_at),
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "request_headers": attempt.request_headers,
        "response_excerpt": attempt.response_excerpt,
        "error": attempt.error,
        "request_id": attempt.request_id,
    }


def _scope(call: PartnerCall) -> service.EndpointScope:
    """Webhooks run on real time, even for a sandbox whose test clock has moved on."""
    return service.EndpointScope(
        call.principal.partner_id, call.principal.mode, call.services.clock.now()
    )


def _allow_private(call: PartnerCall) -> bool:
    return call.services.settings.webhooks_allow_private_networks


async def _check_name(call: PartnerCall, url: object) -> None:
    if url is not None:
        await check_name(
            str(url), allow_private=_allow_private(call), resolver=call.services.webhook_resolver
        )


@router.get("/webhooks/", response_model=EndpointListOut, summary="List webhook endpoints")
async def list_endpoints(call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        endpoints = await service.list_endpoints(session, _scope(call))
        return {"count": len(endpoints), "results": [endpoint_json(e) for e in endpoints]}

    return await call.read(work)


@router.post(
    "/webhooks/",
    status_code=201,
    response_model=EndpointWithSecretOut,
    summary="Create a webhook endpoint",
)
async def create_endpoint(data: EndpointIn, call: PartnerCall = Depends(partner_call)) -> Response:
    await _check_name(call, data.url)

    async def work(session: AsyncSession) -> tuple[int, Any]:
        endpoint = await service.create_endpoint(
            session, call.services.box, _scope(call), data, allow_private=_allow_private(call)
        )
        material = await service.signing_material(session, call.services.box, endpoint)
        return 201, {**endpoint_json(endpoint), **material}

    return await call.write(work)


@router.get(
    "/webhooks/{endpoint_id}/", response_model=EndpointOut, summary="Get a webhook endpoint"
)
async def get_endpoint(endpoint_id: str, call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        return endpoint_json(await service.get_endpoint(session, _scope(call), endpoint_id))

    return await call.read(work)


@router.get(
    "/webhooks/{endpoint_id}/secret",
    response_model=EndpointSecretOut,
    summary="Reveal the signing key and secret",
)
async def reveal_secret(endpoint_id: str, call: PartnerCall = Depends(partner_call)) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        endpoint = await service.get_endpoint(session, _scope(call), endpoint_id)
        material = await service.signing_material(session, call.services.box, endpoint)
        return {"id": endpoint.public_id, "signature": endpoint.signature, **material}

    return await call.read(work)


@router.patch(
    "/webhooks/{endpoint_id}/", response_model=EndpointOut, summary="Change a webhook endpoint"
)
async def update_endpoint(
    endpoint_id: str, data: EndpointPatch, call: PartnerCall = Depends(partner_call)
) -> Response:
    await _check_name(call, data.url)

    async def work(session: AsyncSession) -> tuple[int, Any]:
        endpoint = await service.update_endpoint(
            session, _scope(call), endpoint_id, data, allow_private=_allow_private(call)
        )
        return 200, endpoint_json(endpoint)

    return await call.write(work)


@router.delete("/webhooks/{endpoint_id}/", status_code=204, summary="Delete a webhook endpoint")
async def delete_endpoint(
    endpoint_id: str, _body: NoBody | None = None, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        await service.delete_endpoint(session, _scope(call), endpoint_id)
        return 204, None

    return await call.write(work)


@router.post(
    "/webhooks/{endpoint_id}/rotate_secret",
    response_model=RotatedEndpointOut,
    summary="Rotate the signing secret",
)
async def rotate_secret(
    endpoint_id: str, _body: NoBody | None = None, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        endpoint = await service.rotate_secret(
            session, call.services.box, _scope(call), endpoint_id
        )
        material = await service.signing_material(session, call.services.box, endpoint)
        return 200, {
            **endpoint_json(endpoint),
            **material,
            "previous_secret_expires_at": _time(endpoint.previous_secret_expires_at),
        }

    return await call.write(work)


@router.post(
    "/webhooks/{endpoint_id}/test",
    status_code=202,
    response_model=DeliveryOut,
    summary="Send a test event",
)
async def send_test(
    endpoint_id: str, _body: NoBody | None = None, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        endpoint = await service.get_endpoint(session, _scope(call), endpoint_id)
        now = call.services.clock.now()
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
                "sent_at": server_time(now),
            },
            occurred_at=now,
        )
        delivery = await service.send_test(session, endpoint, event)
        await session.flush()
        return 202, delivery_json(delivery, event)

    return await call.write(work)


@router.get(
    "/webhooks/{endpoint_id}/deliveries/",
    response_model=DeliveryListOut,
    summary="The delivery log of an endpoint",
)
async def list_deliveries(
    endpoint_id: str,
    call: PartnerCall = Depends(partner_call),
    status: str | None = Query(default=None, pattern="^(pending|delivering|succeeded|failed)$"),
    limit: int = Query(default=20, ge=1, le=100),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        endpoint = await service.get_endpoint(session, _scope(call), endpoint_id)
        count, rows = await service.list_deliveries(
            session, endpoint, status=status, limit=limit, offset=offset
        )
        return {"count": count, "results": [delivery_json(d, e) for d, e in rows]}

    return await call.read(work)


@router.get(
    "/webhooks/{endpoint_id}/deliveries/{delivery_id}/",
    response_model=DeliveryDetailOut,
    summary="One delivery with its attempts",
)
async def get_delivery(
    endpoint_id: str, delivery_id: str, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> dict[str, Any]:
        endpoint = await service.get_endpoint(session, _scope(call), endpoint_id)
        delivery, event, attempts = await service.get_delivery(session, endpoint, delivery_id)
        return {
            **delivery_json(delivery, event),
            "payload": event.payload,
            "attempts_log": [attempt_json(a) for a in attempts],
        }

    return await call.read(work)


@router.post(
    "/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    response_model=RedeliveryOut,
    status_code=202,
    summary="Send a delivery again",
)
async def redeliver(
    endpoint_id: str,
    delivery_id: str,
    _body: NoBody | None = None,
    call: PartnerCall = Depends(partner_call),
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        endpoint = await service.get_endpoint(session, _scope(call), endpoint_id)
        delivery = await service.redeliver(
            session, endpoint, delivery_id, call.services.clock.now()
        )
        return 202, {"id": delivery.public_id, "status": delivery.status}

    return await call.write(work)


@router.post(
    "/webhooks/{endpoint_id}/recover",
    response_model=RecoveryOut,
    status_code=202,
    summary="Send again every failed delivery since a time",
)
async def recover(
    endpoint_id: str, data: RecoverIn, call: PartnerCall = Depends(partner_call)
) -> Response:
    async def work(session: AsyncSession) -> tuple[int, Any]:
        endpoint = await service.get_endpoint(session, _scope(call), endpoint_id)
        if data.since.tzinfo is None:
            raise ValidationFailed(errors={"since": ["Give a date-time with an offset."]})
        try:
            in_range(data.since)
        except ValueError:
            raise ValidationFailed(errors={"since": ["The date-time is out of range."]}) from None
        count = await service.recover(session, endpoint, data.since, call.services.clock.now())
        return 202, {"recovered": count}

    return await call.write(work)
