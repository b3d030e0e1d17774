"""Every statement of a dispatcher's turn, built once: a turn only binds values (Core, no
ORM), so that no statement is compiled or its cache key computed per turn. Those of every
turn are also `Prepared` (`RUN`): on SQLite they run on the driver's connection."""

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
from coverline.db.prepared import Prepared
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
# What the dispatcher writes of each attempt: every column but the id.
ATTEMPT_KEYS = (
    "delivery_id",
    "attempted_at",
    "duration_ms",
    "status_code",
    "request_headers",
    "response_excerpt",
    "error",
    "worker",
    "request_id",
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


def _json_ids(ids: Any) -> Any:
    """`ids` is one of the values of the JSON array `ids` (SQLite)."""
    return ids.in_(select(column("value")).select_from(func.json_each(bindparam("ids"))))


def _array_ids(ids: Any, type_: Any) -> Any:
    """`ids` is one of the values of the array `ids` (PostgreSQL)."""
    return ids == any_(bindparam("ids", type_=ARRAY(type_)))


def _healthy(ids: Any) -> Any:
    e = ENDPOINTS.c
    return update(ENDPOINTS).where(ids, e.failing_since.is_not(None)).values(failing_since=None)


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
        # `now` is read through a scalar subquery, which the planner cannot estimate from the
        # table's statistics: with statistics taken while the deliveries waited ahead of it
        # (then brought forward by a recovery, a redelivery, or the benchmark's release), it
        # expected almost none to be due, read every due delivery through the due index and
        # sorted them, for each claim (60-80 ms at 30,000 due, measured), instead of walking
        # the endpoint's index in order and stopping at the limit.
        "due_locking": _due(DELIVERIES, select(now).scalar_subquery(), *claimed).with_for_update(
            skip_locked=True
        ),
        "lease": update(DELIVERIES)
        .where(d.id == any_(bindparam("ids", type_=ARRAY(BigInteger))))
        .values(**leased),
        # The stored bodies of the claimed deliveries, by `webhook-id`: `ids` is a JSON array
        # on SQLite, an array on PostgreSQL (one prepared statement whatever their number).
        "bodies": _bodies(_json_ids(BODIES.c.delivery_public_id)),
        "bodies_array": _bodies(_array_ids(BODIES.c.delivery_public_id, String)),
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
        "succeeded": _succeeded(_json_ids(d.id), leased_by_me),
        "succeeded_array": _succeeded(_array_ids(d.id, BigInteger), leased_by_me),
        "retry": update(DELIVERIES)
        .where(mine)
        .values(
            **recorded,
            status=PENDING,
            next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        ),
        "due_endpoints": select(ENDPOINTS).where(live, has_due),
        "endpoints": select(ENDPOINTS).where(e.id.in_(bindparam("ids", expanding=True))),
        # What a claim checks first: the endpoints that changed since this worker read them
        # (a PATCH, a rotated secret) are read again before anything is sent to them.
        "versions": select(e.id, e.updated_at).where(_json_ids(e.id)),
        "versions_array": select(e.id, e.updated_at).where(_array_ids(e.id, BigInteger)),
        "healthy": _healthy(_json_ids(e.id)),
        "healthy_array": _healthy(_array_ids(e.id, BigInteger)),
        "failing": update(ENDPOINTS)
        .where(e.id == bindparam("b_id"), e.failing_since.is_(None))
        .values(failing_since=bindparam("since", type_=UTCDateTime())),
    }


SQL = _statements()
# The statements of every turn, and of every result.
RUN = {
    name: Prepared(SQL[name], keys=ATTEMPT_KEYS if name == "attempt" else None)
    for name in (
        "claim",
        "due_locking",
        "lease",
        "bodies",
        "bodies_array",
        "attempt",
        "succeeded",
        "succeeded_array",
        "final",
        "retry",
        "reap",
        "healthy",
        "healthy_array",
        "failing",
        "versions",
        "versions_array",
    )
}
