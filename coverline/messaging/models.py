"""Customer messaging as data: a partner's settings and templates per mode, and one row per
message (rendered when it is created, then claimed and sent by the messaging dispatcher)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from coverline.db.base import Base, BigId, JSONDocument


class MessagingSettings(Base):
    """What a partner sends in one mode. No row means the defaults (docs/messaging.md)."""

    __tablename__ = "messaging_settings"

    partner_id: Mapped[int] = mapped_column(
        ForeignKey("partners.id", ondelete="CASCADE"), primary_key=True
    )
    mode: Mapped[str] = mapped_column(String(8), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    channels: Mapped[list[str]] = mapped_column(JSONDocument)
    events: Mapped[list[str]] = mapped_column(JSONDocument)
    sender_name: Mapped[str | None] = mapped_column(String(100), default=None)
    sender_email: Mapped[str | None] = mapped_column(String(320), default=None)
    reply_to: Mapped[str | None] = mapped_column(String(320), default=None)
    support_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    brand_colour: Mapped[str] = mapped_column(String(7))
    sms_sender: Mapped[str | None] = mapped_column(String(16), default=None)
    send_in_sandbox: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class MessageTemplate(Base):
    """A partner's own template for one message kind, channel and language."""

    __tablename__ = "message_templates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(8))
    language: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str | None] = mapped_column(Text, default=None)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index(
            "ix_message_templates_key",
            "partner_id",
            "mode",
            "kind",
            "channel",
            "language",
            unique=True,
        ),
    )


class Message(Base):
    """One message to one recipient over one channel.

    Status: `stored` (rendered, never sent: a sandbox without sending), `queued` (due at
    `next_attempt_at`), `sending` (claimed under a lease), `sent`, `failed`, `cancelled` (an
    activation superseded by a cancellation). `dedup_key` is unique per booking, kind, period
    and channel, so a re-run never creates a second message.
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    booking_id: Mapped[str | None] = mapped_column(String(64), default=None)
    kind: Mapped[str] = mapped_column(String(32))
    source_event: Mapped[str | None] = mapped_column(String(48), default=None)
    event_id: Mapped[str | None] = mapped_column(String(32), default=None)
    channel: Mapped[str] = mapped_column(String(8))
    language: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(String(320))
    recipient_name: Mapped[str | None] = mapped_column(String(400), default=None)
    sender_name: Mapped[str | None] = mapped_column(String(100), default=None)
    sender_email: Mapped[str | None] = mapped_column(String(320), default=None)
    reply_to: Mapped[str | None] = mapped_column(String(320), default=None)
    sms_sender: Mapped[str | None] = mapped_column(String(16), default=None)
    subject: Mapped[str | None] = mapped_column(Text, default=None)
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text, default=None)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(default=0)
    # When it is due in the partner's time (the sandbox test clock's time in a sandbox).
    scheduled_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    leased_by: Mapped[str | None] = mapped_column(String(64), default=None)
    provider: Mapped[str | None] = mapped_column(String(16), default=None)
    provider_message_id: Mapped[str | None] = mapped_column(String(500), default=None)
    parts_sent: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        Index("ix_messages_due", "status", "next_attempt_at"),
        Index("ix_messages_booking", "partner_id", "mode", "booking_id", "id"),
        Index("ix_messages_partner_mode_id", "partner_id", "mode", "id"),
        Index("ix_messages_lease", "status", "lease_expires_at"),
    )
