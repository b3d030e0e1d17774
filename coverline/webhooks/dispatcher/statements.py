"""Every statement of a dispatcher's turn, built once: a turn only binds values (Core, no
ORM), so that no statement is compiled or its cache key computed per turn."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, exists, insert, select, update

from coverline.db.base import UTCDateTime
from coverline.events.models import Event
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

DELIVERIES = cast(Table, WebhookDelivery.__table__)
ATTEMPTS = cast(Table, WebhookAttempt.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
EVENTS = cast(Table, Event.__table__)


def _statements() -> dict[str, Any]:
    d, e = DELIVERIES.c, ENDPOINTS.c
    now = bindparam("now", type_=UTCDateTime())
    earlier = DELIVERIES.alias("earlier")
    blocked = exists().where(
        earlier.c.endpoint_id == d.endpoint_id,
        earlier.c.ordering_key == d.ordering_key,
        earlier.c.id < d.id,
        earlier.c.status.in_(("pending", "delivering")),
    )
    due = (
        select(
            d.id,
            d.public_id,
            d.part,
            d.event_type,
            d.attempts,
            d.failures,
            d.created_at,
            EVENTS.c.type,
            EVENTS.c.payload,
            EVENTS.c.request_id,
        )
        .join(EVENTS, EVENTS.c.id == d.event_id)
        .where(
            d.endpoint_id == bindparam("endpoint_id"),
            d.status == "pending",
            d.next_attempt_at <= now,
            ~blocked,
        )
        .order_by(d.next_attempt_at, d.id)
        .limit(bindparam("limit"))
    )
    mine = and_(
        d.id == bindparam("b_id"), d.leased_by == bindparam("worker"), d.status == "delivering"
    )
    recorded: dict[str, Any] = {
        "attempts": bindparam("b_attempts"),
        "failures": bindparam("b_failures"),
        "last_status_code": bindparam("b_code"),
        "last_error": bindparam("b_error"),
        "lease_expires_at": None,
        "leased_by": None,
    }
    live = and_(e.enabled.is_(True), e.deleted_at.is_(None))
    has_due = exists().where(d.endpoint_id == e.id, d.status == "pending", d.next_attempt_at <= now)
    return {
        "due": due,
        # Lock, then lease those rows by id: PostgreSQL may run a LIMIT … SKIP LOCKED subquery
        # of an UPDATE more than once and so lease more rows than asked.
        "due_locking": due.with_for_update(skip_locked=True, of=DELIVERIES),
        "lease": update(DELIVERIES)
        .where(d.id.in_(bindparam("ids", expanding=True)))
        .values(
            status="delivering",
            lease_expires_at=bindparam("lease", type_=UTCDateTime()),
            leased_by=bindparam("worker"),
        ),
        "give_back": update(DELIVERIES)
        .where(
            d.id.in_(bindparam("ids", expanding=True)),
            d.leased_by == bindparam("worker"),
            d.status == "delivering",
        )
        .values(status="pending", leased_by=None, lease_expires_at=None),
        "reap": update(DELIVERIES)
        .where(d.status == "delivering", d.lease_expires_at < now)
        .values(status="pending", leased_by=None, lease_expires_at=None),
        "attempt": insert(ATTEMPTS),
        "final": update(DELIVERIES)
        .where(mine)
        .values(
            **recorded,
            status=bindparam("b_status"),
            completed_at=bindparam("completed", type_=UTCDateTime()),
        ),
        "retry": update(DELIVERIES)
        .where(mine)
        .values(
            **recorded,
            status="pending",
            next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        ),
        "due_endpoints": select(ENDPOINTS).where(live, has_due),
        "endpoints": select(ENDPOINTS).where(e.id.in_(bindparam("ids", expanding=True))),
        "healthy": update(ENDPOINTS)
        .where(e.id.in_(bindparam("ids", expanding=True)), e.failing_since.is_not(None))
        .values(failing_since=None),
        "failing": update(ENDPOINTS)
        .where(e.id == bindparam("b_id"), e.failing_since.is_(None))
        .values(failing_since=bindparam("since", type_=UTCDateTime())),
    }


SQL = _statements()
