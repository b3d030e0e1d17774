from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from coverline.db.base import Base


class Renewal(Base):
    """The renewal of one renewable quote into its next period (API-CONTRACT §7).

    `stage` is the next clock transition (notify → due → expire) and `next_transition_at`
    when it falls; the scheduler scans only that index, so its cost follows the number of
    renewals due, not the number of policies.
    """

    __tablename__ = "renewals"

    id: Mapped[str] = mapped_column(String(15), primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    package_id: Mapped[str] = mapped_column(
        ForeignKey("quote_packages.id", ondelete="CASCADE"), index=True
    )
    quote_id: Mapped[str] = mapped_column(ForeignKey("quotes.id", ondelete="CASCADE"))
    sequence: Mapped[int]
    status: Mapped[str] = mapped_column(String(12))
    start_date: Mapped[datetime]
    notification_date: Mapped[datetime]
    due_date: Mapped[datetime]
    expiry_date: Mapped[datetime]
    paid_on: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_on: Mapped[datetime | None] = mapped_column(default=None)
    stage: Mapped[str | None] = mapped_column(String(8))
    next_transition_at: Mapped[datetime | None]
    # The price of the next period, once quoted with the product's current version.
    quoted_version_id: Mapped[str | None] = mapped_column(String(36), default=None)
    quoted_price_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    quoted_premium_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    quoted_tax_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    quoted_commission_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    quoted_breakdown: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    quoted_at: Mapped[datetime | None] = mapped_column(default=None)
    # Once paid: the price of the period this one followed, which paying it replaced on the
    # quote (None for renewals paid before it was kept).
    previous_price_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_renewals_next_transition", "next_transition_at"),
        Index("ix_renewals_quote", "quote_id", "sequence"),
    )
