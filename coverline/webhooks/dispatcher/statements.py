"""Every statement of a dispatcher's turn, built once: a turn only binds values (Core, no
ORM), so that no statement is compiled or its cache key computed per turn."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    and_,
    any_,
    bindparam,
    column,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from coverline.db.base import UTCDateTime
from coverline.events.models import Event
from coverline.webhooks.models import (
    DELIVERING,
    LIVE,
    PENDING,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryBody,
    WebhookEndpoint,
    status_is,
)

DELIVERIES = cast(Table, WebhookDelivery.__table__)
ATTEMPTS = cast(Table, WebhookAttempt.__table__)
BODIES = cast(Table, WebhookDeliveryBody.__table__)
ENDPOINTS = cast(Table, WebhookEndpoint.__table__)
EVENTS = cast(Table, Event.__table__)


# What a claim returns of each delivery, in `Claim`'s order.
CLAIMED = (
    "id",
    "public_id",
    "part",
    "event_type",
    "attempts",
    "failures",
    "created_at",
    "request_id",
    "event_id",
)


def _due(table: Any, now: Any, *columns: Any) -> Any:
    """The due deliveries of one endpoint, oldest first, heads of their resource only: none
    of them has an earlier delivery for the same endpoint and resource still to go."""
    earlier = DELIVERIES.alias("earlier")
    blocked = exists().where(
        earlier.c.endpoint_id == table.c.endpoint_id,
        earlier.c.ordering_key == table.c.ordering_key,
        earlier.c.id < table.c.id,
        status_is(earlier.c.status, *LIVE),
    )
    return (
        select(*columns)
        .where(
            table.c.endpoint_id == bindparam("endpoint"),
            status_is(table.c.status, PENDING),
            table.c.next_attempt_at <= now,
            ~blocked,
        )
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(bindparam("limit"))
    )


def _succeeded(ids: Any, leased: Any) -> Any:
    d = DELIVERIES.c
    return (
        update(DELIVERIES)
        .where(ids, leased)
        .values(
            status="succeeded",
            attempts=d.attempts + 1,
            last_status_code=bindparam("code"),
            last_error=None,
            lease_expires_at=None,
            leased_by=None,
            completed_at=bindparam("completed", type_=UTCDateTime()),
        )
    )


def _bodies(ids: Any) -> Any:
    return select(BODIES.c.delivery_public_id, BODIES.c.body).where(ids)


def _statements() -> dict[str, Any]:
    d, e = DELIVERIES.c, ENDPOINTS.c
    now = bindparam("now", type_=UTCDateTime())
    claimed = [d[name] for name in CLAIMED]
    leased = {
        "status": DELIVERING,
        "lease_expires_at": bindparam("lease", type_=UTCDateTime()),
        "leased_by": bindparam("worker"),
    }
    # SQLite has one writer: the statement that finds the due rows leases them. Its subquery
    # reads an alias, for a subquery of the table being updated would be correlated to it.
    candidate = DELIVERIES.alias("candidate")
    picked = _due(candidate, now, candidate.c.id).scalar_subquery()
    # A delivery has a `leased_by` only while it is delivering, so the statements about this
    # worker's deliveries, named by id, test that alone: given the lease index's predicate
    # (`status = 'delivering'`), a planner may walk every leased row instead of looking the
    # ids up (PostgreSQL did, for the successes).
    leased_by_me = d.leased_by == bindparam("worker")
    mine = and_(d.id == bindparam("b_id"), leased_by_me)
    recorded: dict[str, Any] = {
        "attempts": bindparam("b_attempts"),
        "failures": bindparam("b_failures"),
        "last_status_code": bindparam("b_code"),
        "last_error": bindparam("b_error"),
        "lease_expires_at": None,
        "leased_by": None,
    }
    live = and_(e.enabled.is_(True), e.deleted_at.is_(None))
    has_due = exists().where(
        d.endpoint_id == e.id, status_is(d.status, PENDING), d.next_attempt_at <= now
    )
    return {
        "claim": update(DELIVERIES).where(d.id.in_(picked)).values(**leased).returning(*claimed),
        # PostgreSQL: lock, then lease those rows by id, since PostgreSQL may run a LIMIT …
        # SKIP LOCKED subquery of an UPDATE more than once and so lease more rows than asked.
        "due_locking": _due(DELIVERIES, now, *claimed).with_for_update(skip_locked=True),
        "lease": update(DELIVERIES)
        .where(d.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
        .values(**leased),
        # The stored bodies of the claimed deliveries, by `webhook-id`: `ids` is a JSON array
        # on SQLite, an array on PostgreSQL (one prepared statement whatever their number).
        "bodies": _bodies(
            BODIES.c.delivery_public_id.in_(
                select(column("value")).select_from(func.json_each(bindparam("ids")))
            )
        ),
        "bodies_array": _bodies(
            BODIES.c.delivery_public_id == any_(bindparam("ids", type_=ARRAY(String)))
        ),
        # Deliveries without a stored body: the events to render them from.
        "events": select(EVENTS.c.id, EVENTS.c.type, EVENTS.c.payload, EVENTS.c.request_id).where(
            EVENTS.c.id.in_(bindparam("ids", expanding=True))
        ),
        "give_back": update(DELIVERIES)
        .where(
            d.id.in_(bindparam("ids", expanding=True)),
            leased_by_me,
        )
        .values(status=PENDING, leased_by=None, lease_expires_at=None),
        "reap": update(DELIVERIES)
        .where(status_is(d.status, DELIVERING), d.lease_expires_at < now)
        .values(status=PENDING, leased_by=None, lease_expires_at=None),
        "attempt": insert(ATTEMPTS),
        "final": update(DELIVERIES)
        .where(mine)
        .values(
            **recorded,
            status=bindparam("b_status"),
            completed_at=bindparam("completed", type_=UTCDateTime()),
        ),
        # Successes go together, one statement per status code: `ids` is a JSON array on
        # SQLite (json_each), an array on PostgreSQL.
        "succeeded": _succeeded(
            d.id.in_(select(column("value")).select_from(func.json_each(bindparam("ids")))),
            leased_by_me,
        ),
        "succeeded_array": _succeeded(
            d.id == any_(bindparam("ids", type_=ARRAY(BigInteger))), leased_by_me
        ),
        "retry": update(DELIVERIES)
        .where(mine)
        .values(
            **recorded,
            status=PENDING,
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
