"""Webhooks as data: endpoint → delivery (one per endpoint and event) → attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coverline.db.base import Base, BigId, JSONDocument
from coverline.events.models import Event

JSONList = JSONDocument

# The states whose deliveries are still to go: the dispatcher's indexes hold only these rows.
PENDING = "pending"
DELIVERING = "delivering"
LIVE = (PENDING, DELIVERING)


def status_is(column: Any, *states: str) -> ColumnElement[bool]:
    """A test of a delivery's `status` written with literals, not bound parameters: a planner
    uses a partial index only for a query whose WHERE states the index's predicate, and a
    parameter states nothing (SQLite's rule; PostgreSQL's too for a generic plan)."""
    assert all(state.isalpha() for state in states), states
    values: list[ColumnElement[str]] = [literal_column(f"'{state}'") for state in states]
    if len(values) == 1:
        return column == values[0]  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def _where(*states: str, backends: tuple[str, ...] = ("sqlite", "postgresql")) -> dict[str, Any]:
    """An index's predicate `status` in `states`, on these backends (whole on the others)."""
    quoted = ", ".join(f"'{state}'" for state in states)
    predicate = text(f"status = {quoted}" if len(states) == 1 else f"status IN ({quoted})")
    return {f"{backend}_where": predicate for backend in backends}


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(300), default=None)
    enabled: Mapped[bool] = mapped_column(default=True)
    # Event names in the endpoint's format; None means every event of that format.
    events: Mapped[list[str] | None] = mapped_column(JSONList, default=None)
    format: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(64))
    secret_ciphertext: Mapped[str] = mapped_column(String(512))
    previous_secret_ciphertext: Mapped[str | None] = mapped_column(String(512), default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    retry_schedule: Mapped[list[float] | None] = mapped_column(JSONList, default=None)
    timeout_seconds: Mapped[float | None] = mapped_column(default=None)
    max_concurrency: Mapped[int | None] = mapped_column(default=None)
    disabled_reason: Mapped[str | None] = mapped_column(String(300), default=None)
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_webhook_endpoints_partner_mode", "partner_id", "mode"),)


class WebhookDelivery(Base):
    """One event for one endpoint. `public_id` is the `webhook-id` header, the same on every
    retry; `ordering_key` (the resource) keeps deliveries about one booking in order; what it
    sends is its `WebhookDeliveryBody`; `request_id` is the event's, for the attempt log."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True, insert_sentinel=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    part: Mapped[int] = mapped_column(default=0)
    event_type: Mapped[str] = mapped_column(String(48))
    partner_id: Mapped[int] = mapped_column(BigInteger)
    mode: Mapped[str] = mapped_column(String(8))
    ordering_key: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # pending → delivering → succeeded | failed (and back to pending on retry or redelivery)
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(default=0)
    failures: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    leased_by: Mapped[str | None] = mapped_column(String(64), default=None)
    last_status_code: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    completed_at: Mapped[datetime | None] = mapped_column(default=None)

    event: Mapped[Event] = relationship(lazy="raise")

    # The dispatcher's indexes are partial: they hold the deliveries still to go, not the
    # millions delivered. A status change in or out of them is one index entry, not a move
    # within every index on status; on PostgreSQL, whose every non-HOT update writes an entry
    # in each index whose predicate the new row meets, a delivery's success writes three
    # index entries instead of seven. Queries state the predicates with `status_is`.
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", "part"),
        Index("ix_webhook_deliveries_due", "next_attempt_at", **_where(PENDING)),
        # The claim's ordered pick: due deliveries of one endpoint, oldest first.
        Index(
            "ix_webhook_deliveries_endpoint_due",
            "endpoint_id",
            "next_attempt_at",
            "id",
            **_where(PENDING),
        ),
        # The claim's order check: an earlier delivery of the same resource still to go.
        # Partial on PostgreSQL only. Its columns never change, so on SQLite, which writes an
        # index entry again only when one of its columns or of its predicate's changes, the
        # whole index is never written after the insert; partial, every claim and every
        # result rewrote an entry in it, and its order (by resource) scatters them over its
        # pages: 187 pages written per turn of 139 deliveries instead of 60. PostgreSQL
        # writes an entry in every index at each non-HOT update: there it stays partial.
        Index(
            "ix_webhook_deliveries_order",
            "endpoint_id",
            "ordering_key",
            "id",
            **_where(*LIVE, backends=("postgresql",)),
        ),
        Index("ix_webhook_deliveries_lease", "lease_expires_at", **_where(DELIVERING)),
    )


class WebhookDeliveryBody(Base):
    """The exact bytes every attempt of a delivery sends, rendered in the endpoint's format
    when the event was committed. A delivery without one (made before bodies were stored, or
    whose rendering failed then) is rendered from its event when sent. Apart from the delivery
    row, which is written again at every claim and result: that row stays a few hundred bytes
    (SQLite and PostgreSQL both write a changed row whole), and the body is written once."""

    __tablename__ = "webhook_delivery_bodies"

    delivery_public_id: Mapped[str] = mapped_column(
        String(40),
        ForeignKey("webhook_deliveries.public_id", ondelete="CASCADE"),
        primary_key=True,
    )
    body: Mapped[bytes] = mapped_column(LargeBinary)

    # For the unit of work: a delivery made with the ORM is inserted before its body.
    delivery: Mapped[WebhookDelivery] = relationship(lazy="raise")


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(index=True)
    duration_ms: Mapped[int]
    status_code: Mapped[int | None] = mapped_column(default=None)
    request_headers: Mapped[dict[str, Any]]
    response_excerpt: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    worker: Mapped[str | None] = mapped_column(String(64), default=None)
    # The request id of the event delivered, copied so the log of attempts needs no join.
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
