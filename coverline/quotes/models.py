from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from coverline.db.base import Base

if TYPE_CHECKING:
    from coverline.renewals.models import Renewal


class QuotePackage(Base):
    """A quote package; booking it keeps its id and turns it into a booking."""

    __tablename__ = "quote_packages"

    id: Mapped[str] = mapped_column(String(15), primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    customer_country: Mapped[str | None] = mapped_column(String(2))
    customer_region: Mapped[str | None] = mapped_column(String(100))
    customer_language: Mapped[str | None] = mapped_column(String(10))
    partner_transaction_id: Mapped[str | None] = mapped_column(String(255))
    security_token: Mapped[str] = mapped_column(String(32))
    is_booking: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    booked_at: Mapped[datetime | None] = mapped_column(default=None)

    quotes: Mapped[list[Quote]] = relationship(
        back_populates="package", lazy="raise", order_by="Quote.position"
    )
    policyholder: Mapped[Policyholder | None] = relationship(lazy="raise", uselist=False)
    renewals: Mapped[list[Renewal]] = relationship(lazy="raise", order_by="Renewal.sequence")

    __table_args__ = (
        Index(
            "ix_quote_packages_partner_mode_booking",
            "partner_id",
            "mode",
            "is_booking",
            "created_at",
        ),
        Index("ix_quote_packages_partner_txn", "partner_id", "partner_transaction_id"),
    )


class Quote(Base):
    __tablename__ = "quotes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    package_id: Mapped[str] = mapped_column(
        ForeignKey("quote_packages.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    product_version_id: Mapped[str] = mapped_column(ForeignKey("product_versions.id"))
    status: Mapped[str] = mapped_column(String(16))
    fields: Mapped[dict[str, Any]]
    insured: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # Instants in UTC plus the offset the partner sent, so responses keep that offset.
    start_at: Mapped[datetime]
    start_offset: Mapped[int]
    end_at: Mapped[datetime]
    end_offset: Mapped[int]
    # Money in the package currency's minor units; the breakdown keeps taxes and benefits.
    price_minor: Mapped[int] = mapped_column(BigInteger)
    premium_minor: Mapped[int] = mapped_column(BigInteger)
    tax_minor: Mapped[int] = mapped_column(BigInteger)
    commission_minor: Mapped[int] = mapped_column(BigInteger)
    cover_amount_minor: Mapped[int | None] = mapped_column(BigInteger, default=None)
    breakdown: Mapped[dict[str, Any]]
    total_renewed_times: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(default=None)

    package: Mapped[QuotePackage] = relationship(back_populates="quotes", lazy="raise")


class Policyholder(Base):
    __tablename__ = "policyholders"

    package_id: Mapped[str] = mapped_column(
        ForeignKey("quote_packages.id", ondelete="CASCADE"), primary_key=True
    )
    first_name: Mapped[str] = mapped_column(String(200))
    middle_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    country: Mapped[str | None] = mapped_column(String(2))
    age: Mapped[int | None]
    address1: Mapped[str | None] = mapped_column(String(300))
    address2: Mapped[str | None] = mapped_column(String(300))
    city: Mapped[str | None] = mapped_column(String(200))
    postcode: Mapped[str | None] = mapped_column(String(32))
    region: Mapped[str | None] = mapped_column(String(200))
    secondary_email: Mapped[str | None] = mapped_column(String(320))
    birth_date: Mapped[str | None] = mapped_column(String(10))
    company: Mapped[str | None] = mapped_column(String(300))
    allow_updates: Mapped[bool] = mapped_column(default=False)
