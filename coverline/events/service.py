"""Domain events into the outbox.

Services call `record` inside the caller's transaction. The events of a transaction are
written when it commits (`Database.transaction` runs the session's before-commit work), all in
one statement, with the webhook deliveries and customer messages they cause: a change is
never committed without its events, and a rolled-back change leaves none. A transaction that
records many events (a scheduler batch) costs a few statements, not a few per event.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, cast

import orjson
from sqlalchemy import Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from coverline.db.engine import before_commit
from coverline.db.prepared import Prepared
from coverline.events.models import Event
from coverline.kit import ids
from coverline.kit.request_id import current_request_id
from coverline.messaging import service as messaging
from coverline.webhooks.service import fan_out

OUTBOX = "outbox"
EVENTS = cast(Table, Event.__table__)
COLUMNS = [column.key for column in EVENTS.columns if column.key != "id"]
# Many rows, ids back in the order of the rows (one statement on PostgreSQL; one run of the
# compiled statement per row on SQLite's driver connection).
INSERT_EVENTS = Prepared(
    insert(EVENTS).returning(EVENTS.c.id, sort_by_parameter_order=True), keys=COLUMNS
)


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
    """An event of this transaction; it gets its id when the transaction commits. The payload
    is taken as it is now: what the caller does with its dict afterwards is not the event."""
    recorded = Event(
        public_id=ids.event_id(),
        partner_id=partner_id,
        mode=mode,
        type=type.value,
        resource_type=resource_type,
        resource_id=resource_id,
        payload=orjson.loads(orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)),
        occurred_at=at,
        request_id=current_request_id(),
    )
    pending: list[Event] | None = session.info.get(OUTBOX)
    if pending is None:
        pending = session.info[OUTBOX] = []
        before_commit(session, write_outbox)
    pending.append(recorded)
    return recorded


async def write_outbox(session: AsyncSession) -> None:
    """Write the transaction's events, then their deliveries and messages."""
    # The change itself first: fan-outs then find its rows in the session, not in a query.
    await session.flush()
    while pending := session.info.pop(OUTBOX, None):
        connection = await session.connection()
        rows = [{key: getattr(item, key) for key in COLUMNS} for item in pending]
        ids_in_order = await INSERT_EVENTS.execute_each(connection, rows)
        for item, (event_id,) in zip(pending, ids_in_order, strict=True):
            item.id = event_id
        await fan_out(session, pending)
        for item in pending:
            await messaging.fan_out(session, item)


@event.listens_for(Session, "before_commit")
def _nothing_left_unwritten(session: Session) -> None:
    """A session committed outside `Database.transaction` would drop its events: refuse."""
    if session.info.get(OUTBOX):
        raise RuntimeError("events recorded in a session committed without writing its outbox")
