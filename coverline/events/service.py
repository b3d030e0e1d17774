"""Domain events into the outbox. Services call `record` inside the caller's transaction; the
deliveries an event causes are created in that same transaction, so none is ever lost."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from coverline.events.models import Event
from coverline.kit import ids
from coverline.messaging import service as messaging
from coverline.webhooks.service import fan_out


class EventType(StrEnum):
    QUOTE_CREATED = "QUOTE_CREATED"
    QUOTE_UPDATED = "QUOTE_UPDATED"
    QUOTE_OPTED_OUT = "QUOTE_OPTED_OUT"
    BOOKING_CREATED = "BOOKING_CREATED"
    BOOKING_PAYMENT_CONFIRMED = "BOOKING_PAYMENT_CONFIRMED"
    BOOKING_UPDATED = "BOOKING_UPDATED"
    BOOKING_CANCELLED = "BOOKING_CANCELLED"
    RENEWAL_CREATED = "RENEWAL_CREATED"
    RENEWAL_NOTIFICATION = "RENEWAL_NOTIFICATION"
    RENEWAL_DUE = "RENEWAL_DUE"
    RENEWAL_EXPIRED = "RENEWAL_EXPIRED"
    WEBHOOK_TEST = "WEBHOOK_TEST"
    ENDPOINT_DISABLED = "ENDPOINT_DISABLED"


async def record(
    session: AsyncSession,
    *,
    partner_id: int,
    mode: str,
    type: EventType,
    resource_type: str,
    resource_id: str,
    payload: dict[str, Any],
    at: datetime,
) -> Event:
    event = Event(
        public_id=ids.event_id(),
        partner_id=partner_id,
        mode=mode,
        type=type.value,
        resource_type=resource_type,
        resource_id=resource_id,
        payload=payload,
        occurred_at=at,
    )
    session.add(event)
    await fan_out(session, event)
    await messaging.fan_out(session, event)
    return event
