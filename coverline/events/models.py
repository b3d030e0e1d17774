from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from coverline.db.base import Base, BigId
from coverline.kit.request_id import current_request_id


class Event(Base):
    """The outbox: one row per state change, written in the transaction of the change.

    `id` grows with commit order per writer and orders deliveries about one resource;
    `payload` is the resource as it was right after the change. `request_id` is the API
    request (or worker job) that wrote it, taken from the context when the row is inserted.
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # A client-made unique value lets SQLite insert many events in one statement.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, insert_sentinel=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    type: Mapped[str] = mapped_column(String(48))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    occurred_at: Mapped[datetime]
    request_id: Mapped[str | None] = mapped_column(String(64), default=current_request_id)

    __table_args__ = (
        Index("ix_events_partner_mode_id", "partner_id", "mode", "id"),
        Index("ix_events_resource", "resource_id", "id"),
    )
