"""Webhooks as data: endpoint → delivery (one per endpoint and event) → attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coverline.db.base import Base, BigId, JSONDocument
from coverline.events.models import Event

JSONList = JSONDocument


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
    retry; `ordering_key` (the resource) keeps deliveries about one booking in order. `body`
    is the exact bytes every attempt sends, rendered in the endpoint's format when the event
    was committed (deliveries made before it existed have none: they are rendered from the
    event when sent); `request_id` is the event's, for the attempt log."""

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
    body: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
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

    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", "part"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # The claim's ordered pick: due deliveries of one endpoint, oldest first.
        Index(
            "ix_webhook_deliveries_endpoint_due",
            "endpoint_id",
            "status",
            "next_attempt_at",
            "id",
        ),
        Index("ix_webhook_deliveries_order", "endpoint_id", "ordering_key", "id"),
        Index("ix_webhook_deliveries_lease", "status", "lease_expires_at"),
    )


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
