from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from coverline.db.base import Base


class SandboxClock(Base):
    """A partner's sandbox test clock: its sandbox time is real time plus `offset_seconds`."""

    __tablename__ = "sandbox_clocks"

    partner_id: Mapped[int] = mapped_column(
        ForeignKey("partners.id", ondelete="CASCADE"), primary_key=True
    )
    offset_seconds: Mapped[float]
    updated_at: Mapped[datetime]
