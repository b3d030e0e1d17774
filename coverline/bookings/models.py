"""Tables of a booking's lifecycle: quoted modifications, cancellations, instalments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coverline.db.base import Base


class BookingUpdate(Base):
    """A priced change of a booking (`quote_for_update`), applied by `confirm_update`.

    `changes` holds everything the confirmation writes (new fields, dates, the rating), so
    that the price quoted is the price applied. `basis` fingerprints the booking when the
    change was priced: a booking that changed since then refuses the confirmation.
    """

    __tablename__ = "booking_updates"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    package_id: Mapped[str] = mapped_column(
        ForeignKey("quote_packages.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(12))
    changes: Mapped[dict[str, Any]]
    basis: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)


class Cancellation(Base):
    """The cancellation of some or all quotes of a booking, previewed or done.

    `lines` is one entry per cancelled quote: `quote_id`, `paid_minor`, `refund_minor`,
    `adjustment_fee_minor` (package currency minor units). `effective_at` is the moment the
    refunds were worked out for, which is the cancellation date once confirmed.
    """

    __tablename__ = "cancellations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    package_id: Mapped[str] = mapped_column(
        ForeignKey("quote_packages.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(12))
    lines: Mapped[dict[str, Any]]
    basis: Mapped[str] = mapped_column(String(64))
    effective_at: Mapped[datetime]
    confirm_before: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)


class Instalment(Base):
    """One monthly payment of a quote sold with an instalment plan.

    Amounts are minor units of the package currency; `taxes` splits the instalment's tax
    by tax code, so that the instalments of a quote add up to its premium and each tax.
    """

    __tablename__ = "instalments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    package_id: Mapped[str] = mapped_column(
        ForeignKey("quote_packages.id", ondelete="CASCADE"), index=True
    )
    quote_id: Mapped[str] = mapped_column(ForeignKey("quotes.id", ondelete="CASCADE"))
    plan: Mapped[str] = mapped_column(String(32))
    number: Mapped[int]
    period_start: Mapped[datetime]
    period_end: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(12))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    premium_minor: Mapped[int] = mapped_column(BigInteger)
    commission_minor: Mapped[int] = mapped_column(BigInteger)
    taxes: Mapped[dict[str, Any]]
    paid_at: Mapped[datetime | None] = mapped_column(default=None)
    failures: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("quote_id", "number"),)
