"""Webhook endpoints, the fan-out of outbox events into deliveries, and delivery recovery."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.db.engine import Database
from coverline.db.prepared import Prepared
from coverline.events.models import Event
from coverline.kit.errors import NON_FIELD_ERRORS, NotFound, ValidationFailed
from coverline.kit.request_id import current_request_id
from coverline.partners.crypto import SecretBox
from coverline.partners.models import ApiCredential, Partner
from coverline.webhooks import formats, signing
from coverline.webhooks.models import (
    LIVE,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryBody,
    WebhookEndpoint,
    status_is,
)
from coverline.webhooks.network import check_url
from coverline.webhooks.schemas import EndpointIn, EndpointPatch

log = logging.getLogger("coverline.webhooks")

ROTATION_OVERLAP = timedelta(hours=24)
# The wake-up channel of the dispatchers; its payloads are endpoint ids.
WAKE_CHANNEL = "coverline_webhooks"
# Per partner and mode (Stripe allows 16 per account): a dashboard and a list stay small.
MAX_ENDPOINTS = 100
DEFAULT_SIGNATURE = {formats.XCOVER: signing.XCOVER, formats.MYCOVER: signing.MYCOVER}


def delivery_public_id() -> str:
    return "msg_" + secrets.token_hex(12)


@dataclass(frozen=True)
class EndpointScope:
    partner_id: int
    mode: str
    now: datetime


def _check_events(fmt: str, events: list[str] | None) -> list[str] | None:
    if events is None:
        return None
    known = set(formats.EVENT_NAMES[fmt])
    unknown = [name for name in events if name not in known]
    if unknown:
        raise ValidationFailed(
            errors={
                "events": [
                    f"Unknown {fmt} event '{name}'; known: {', '.join(sorted(known))}."
                    for name in unknown
                ]
            }
        )
    return sorted(set(events))


async def partner_api_secret(
    session: AsyncSession, box: SecretBox, partner_id: int, mode: str
) -> str:
    """MyCover signs with the partner's secret API key: the newest active one of the mode."""
    credential = await session.scalar(
        select(ApiCredential)
        .where(
            ApiCredential.partner_id == partner_id,
            ApiCredential.mode == mode,
            ApiCredential.status == "active",
        )
        .order_by(ApiCredential.id.desc())
        .limit(1)
    )
    if credential is None:
        raise ValidationFailed(
            "The partner has no active API key.",
            errors={"signature": ["The partner has no active API key."]},
        )
    return box.decrypt(credential.secret_ciphertext)


async def create_endpoint(
    session: AsyncSession,
    box: SecretBox,
    scope: EndpointScope,
    data: EndpointIn,
    *,
    allow_private: bool,
) -> WebhookEndpoint:
    check_url(str(data.url), allow_private=allow_private)
    # The partner's row, locked, serialises its creations: the count below stays true.
    await session.execute(
        select(Partner.id).where(Partner.id == scope.partner_id).with_for_update()
    )
    existing = await session.scalar(
        select(func.count())
        .select_from(WebhookEndpoint)
        .where(
            WebhookEndpoint.partner_id == scope.partner_id,
            WebhookEndpoint.mode == scope.mode,
            WebhookEndpoint.deleted_at.is_(None),
        )
    )
    if (existing or 0) >= MAX_ENDPOINTS:
        raise ValidationFailed(
            errors={
                NON_FIELD_ERRORS: [
                    f"A partner has at most {MAX_ENDPOINTS} webhook endpoints in each mode; "
                    "delete one first."
                ]
            }
        )
    signature = data.signature or DEFAULT_SIGNATURE[data.format]
    endpoint = WebhookEndpoint(
        public_id="whe_" + secrets.token_hex(10),
        partner_id=scope.partner_id,
        mode=scope.mode,
        url=str(data.url),
        description=data.description,
        enabled=data.enabled,
        events=_check_events(data.format, data.events),
        format=data.format,
        signature=signature,
        key=signing.new_key(),
        secret_ciphertext=box.encrypt(signing.new_secret()),
        retry_schedule=data.retry_schedule,
        timeout_seconds=data.timeout_seconds,
        max_concurrency=data.max_concurrency,
        created_at=scope.now,
        updated_at=scope.now,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def list_endpoints(session: AsyncSession, scope: EndpointScope) -> list[WebhookEndpoint]:
    rows = await session.scalars(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.partner_id == scope.partner_id,
            WebhookEndpoint.mode == scope.mode,
            WebhookEndpoint.deleted_at.is_(None),
        )
        .order_by(WebhookEndpoint.id)
    )
    return list(rows)


async def get_endpoint(
    session: AsyncSession, scope: EndpointScope, public_id: str, *, lock: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.public_id == public_id,
        WebhookEndpoint.partner_id == scope.partner_id,
        WebhookEndpoint.mode == scope.mode,
        WebhookEndpoint.deleted_at.is_(None),
    )
    if lock:
        query = query.with_for_update()
    endpoint = await session.scalar(query)
    if endpoint is None:
        raise NotFound(f"Webhook endpoint {public_id} not found.")
    return endpoint


async def update_endpoint(
    session: AsyncSession,
    scope: EndpointScope,
    public_id: str,
    data: EndpointPatch,
    *,
    allow_private: bool,
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, scope, public_id, lock=True)
    changes = data.model_dump(exclude_unset=True)
    if "url" in changes:
        if changes["url"] is None:
            raise ValidationFailed(errors={"url": ["This field may not be null."]})
        endpoint.url = check_url(str(changes["url"]), allow_private=allow_private)
    for name in ("format", "signature", "enabled"):
        if name in changes and changes[name] is None:
            raise ValidationFailed(errors={name: ["This field may not be null."]})
    if "format" in changes:
        endpoint.format = changes["format"]
        if "signature" not in changes and endpoint.signature in DEFAULT_SIGNATURE.values():
            endpoint.signature = DEFAULT_SIGNATURE[endpoint.format]
    if "signature" in changes:
        endpoint.signature = changes["signature"]
    if "events" in changes or "format" in changes:
        endpoint.events = _check_events(endpoint.format, changes.get("events", endpoint.events))
    if "enabled" in changes:
        endpoint.enabled = changes["enabled"]
        if endpoint.enabled:
            endpoint.disabled_reason = None
            endpoint.failing_since = None
            Database.wake(session, WAKE_CHANNEL, (str(endpoint.id),))
    for name in ("description", "retry_schedule", "timeout_seconds", "max_concurrency"):
        if name in changes:
            setattr(endpoint, name, changes[name])
    endpoint.updated_at = scope.now
    return endpoint


async def delete_endpoint(session: AsyncSession, scope: EndpointScope, public_id: str) -> None:
    endpoint = await get_endpoint(session, scope, public_id, lock=True)
    endpoint.deleted_at = scope.now
    endpoint.enabled = False
    endpoint.updated_at = scope.now
    # Also those a worker holds: without their lease, the worker's result for one being sent
    # records its attempt and leaves it failed, and those waiting are not given back.
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            status_is(WebhookDelivery.status, *LIVE),
        )
        .values(
            status="failed",
            last_error="The endpoint was deleted.",
            completed_at=scope.now,
            leased_by=None,
            lease_expires_at=None,
        )
    )


async def rotate_secret(
    session: AsyncSession, box: SecretBox, scope: EndpointScope, public_id: str
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, scope, public_id, lock=True)
    endpoint.previous_secret_ciphertext = endpoint.secret_ciphertext
    endpoint.previous_secret_expires_at = scope.now + ROTATION_OVERLAP
    endpoint.secret_ciphertext = box.encrypt(signing.new_secret())
    endpoint.updated_at = scope.now
    return endpoint


async def signing_material(
    session: AsyncSession, box: SecretBox, endpoint: WebhookEndpoint
) -> dict[str, Any]:
    if endpoint.signature == signing.MYCOVER:
        secret = await partner_api_secret(session, box, endpoint.partner_id, endpoint.mode)
        return {"key": None, "secret": secret}
    return {"key": endpoint.key, "secret": box.decrypt(endpoint.secret_ciphertext)}


ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
DELIVERIES = cast(Table, WebhookDelivery.__table__)
BODIES = cast(Table, WebhookDeliveryBody.__table__)
# The fan-out's statements, run on the driver's connection where it can (they run in every
# transaction that records an event).
LIVE_ENDPOINTS = Prepared(
    select(ENDPOINTS.c.id, ENDPOINTS.c.format, ENDPOINTS.c.events).where(
        ENDPOINTS.c.partner_id == bindparam("partner_id"),
        ENDPOINTS.c.mode == bindparam("mode"),
        ENDPOINTS.c.enabled.is_(True),
        ENDPOINTS.c.deleted_at.is_(None),
    )
)
DELIVERY_KEYS = (
    "public_id",
    "endpoint_id",
    "event_id",
    "part",
    "event_type",
    "partner_id",
    "mode",
    "ordering_key",
    "request_id",
    "status",
    "attempts",
    "failures",
    "next_attempt_at",
    "created_at",
)
INSERT_DELIVERIES = Prepared(insert(DELIVERIES), keys=DELIVERY_KEYS)
INSERT_BODIES = Prepared(insert(BODIES), keys=("delivery_public_id", "body"))


class LiveEndpoint(NamedTuple):
    id: int
    format: str
    events: list[str] | None


def wanted(
    fmt: str, events: list[str] | None, event_type: str, payload: dict[str, Any]
) -> list[formats.Message]:
    """The webhooks an endpoint gets for an event: its format's, through its event filter (a
    test event ignores the filter)."""
    return [
        message
        for message in formats.messages_for(fmt, event_type, payload)
        if events is None or message.name in events or event_type == "WEBHOOK_TEST"
    ]


class _Bodies:
    """The bodies of one event, rendered once per format and message however many endpoints
    receive them: what every attempt of a delivery sends, fixed when the event is committed."""

    __slots__ = ("_event", "_rendered")

    def __init__(self, event: Event) -> None:
        self._event = event
        self._rendered: dict[tuple[str, str, int], bytes | None] = {}

    def get(self, fmt: str, message: formats.Message) -> bytes | None:
        key = (fmt, message.name, message.part)
        if key in self._rendered:
            return self._rendered[key]
        event = self._event
        try:
            body = formats.body_for(fmt, message.name, message.part, event.type, event.payload)
        except Exception:
            # Never the change's failure: the dispatcher renders it again when it sends, and
            # records why it cannot as a failed attempt.
            log.exception("webhook body of event %s could not be rendered", event.public_id)
            body = None
        self._rendered[key] = body
        return body


async def fan_out(session: AsyncSession, events: Sequence[Event]) -> None:
    """Create the deliveries of events just written (they have their ids), in their
    transaction: one statement for all of them. The endpoints of a partner and mode are looked
    up once per transaction."""
    relevant = [event for event in events if event.type in formats.XCOVER_EVENTS]
    if not relevant:
        return
    connection = await session.connection()
    cache: dict[tuple[int, str], list[LiveEndpoint]] = session.info.setdefault(
        "webhook_endpoints", {}
    )
    # Real time: a sandbox test clock may put the event in the future.
    now = datetime.now(UTC)
    rows = []
    stored = []
    woken = set()
    for event in relevant:
        key = (event.partner_id, event.mode)
        endpoints = cache.get(key)
        if endpoints is None:
            found = await LIVE_ENDPOINTS.execute(
                connection, {"partner_id": event.partner_id, "mode": event.mode}
            )
            endpoints = cache[key] = [LiveEndpoint(*row) for row in found]
        bodies = _Bodies(event)
        for endpoint in endpoints:
            for message in wanted(endpoint.format, endpoint.events, event.type, event.payload):
                public_id = delivery_public_id()
                body = bodies.get(endpoint.format, message)
                if body is not None:
                    stored.append({"delivery_public_id": public_id, "body": body})
                rows.append(
                    {
                        "public_id": public_id,
                        "endpoint_id": endpoint.id,
                        "event_id": event.id,
                        "part": message.part,
                        "event_type": message.name,
                        "partner_id": event.partner_id,
                        "mode": event.mode,
                        "ordering_key": event.resource_id,
                        "request_id": event.request_id,
                        "status": "pending",
                        "attempts": 0,
                        "failures": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
                woken.add(str(endpoint.id))
    if rows:
        await INSERT_DELIVERIES.executemany(connection, rows)
        await INSERT_BODIES.executemany(connection, stored)
        Database.wake(session, WAKE_CHANNEL, woken)


def deliver_to(
    session: AsyncSession, endpoint: WebhookEndpoint, event: Event
) -> list[WebhookDelivery]:
    """Deliveries of one event to one endpoint, as ORM rows of the session (a test event)."""
    created = []
    bodies = _Bodies(event)
    for message in wanted(endpoint.format, endpoint.events, event.type, event.payload):
        delivery = WebhookDelivery(
            public_id=delivery_public_id(),
            endpoint_id=endpoint.id,
            event=event,
            part=message.part,
            event_type=message.name,
            partner_id=event.partner_id,
            mode=event.mode,
            ordering_key=event.resource_id,
            request_id=event.request_id or current_request_id(),
            status="pending",
            attempts=0,
            failures=0,
            # Real time: a sandbox test clock may put the event in the future.
            next_attempt_at=datetime.now(UTC),
            created_at=datetime.now(UTC),
        )
        session.add(delivery)
        body = bodies.get(endpoint.format, message)
        if body is not None:
            session.add(WebhookDeliveryBody(delivery=delivery, body=body))
        created.append(delivery)
    if created:
        Database.wake(session, WAKE_CHANNEL, (str(endpoint.id),))
    return created


async def list_deliveries(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    *,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[int, list[tuple[WebhookDelivery, Event]]]:
    where = [WebhookDelivery.endpoint_id == endpoint.id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    count = await session.scalar(select(func.count()).select_from(WebhookDelivery).where(*where))
    rows = await session.execute(
        select(WebhookDelivery, Event)
        .join(Event, Event.id == WebhookDelivery.event_id)
        .where(*where)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return int(count or 0), [(d, e) for d, e in rows.all()]


async def get_delivery(
    session: AsyncSession, endpoint: WebhookEndpoint, public_id: str
) -> tuple[WebhookDelivery, Event, list[WebhookAttempt]]:
    row = (
        await session.execute(
            select(WebhookDelivery, Event)
            .join(Event, Event.id == WebhookDelivery.event_id)
            .where(
                WebhookDelivery.public_id == public_id,
                WebhookDelivery.endpoint_id == endpoint.id,
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"Delivery {public_id} not found.")
    delivery, event = row
    attempts = await session.scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery.id)
        .order_by(WebhookAttempt.id)
    )
    return delivery, event, list(attempts)


async def stored_body(session: AsyncSession, delivery: WebhookDelivery) -> bytes | None:
    """The bytes the delivery sends, when they were stored as the event was committed."""
    body: bytes | None = await session.scalar(
        select(WebhookDeliveryBody.body).where(
            WebhookDeliveryBody.delivery_public_id == delivery.public_id
        )
    )
    return body


def _reschedule(now: datetime) -> dict[str, Any]:
    return {
        "status": "pending",
        "failures": 0,
        "next_attempt_at": now,
        "lease_expires_at": None,
        "leased_by": None,
        "completed_at": None,
    }


async def redeliver(
    session: AsyncSession, endpoint: WebhookEndpoint, public_id: str, now: datetime
) -> WebhookDelivery:
    delivery, _event, _attempts = await get_delivery(session, endpoint, public_id)
    if delivery.status in {"pending", "delivering"}:
        raise ValidationFailed(
            errors={"status": [f"Delivery {public_id} is {delivery.status} already."]}
        )
    for name, value in _reschedule(now).items():
        setattr(delivery, name, value)
    Database.wake(session, WAKE_CHANNEL, (str(endpoint.id),))
    return delivery


async def recover(
    session: AsyncSession, endpoint: WebhookEndpoint, since: datetime, now: datetime
) -> int:
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.status == "failed",
            WebhookDelivery.created_at >= since,
        )
        .values(**_reschedule(now))
    )
    Database.wake(session, WAKE_CHANNEL, (str(endpoint.id),))
    return int(getattr(result, "rowcount", 0) or 0)


async def send_test(
    session: AsyncSession, endpoint: WebhookEndpoint, event: Event
) -> WebhookDelivery:
    session.add(event)
    return deliver_to(session, endpoint, event)[0]
