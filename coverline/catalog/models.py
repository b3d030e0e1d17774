from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coverline.db.base import Base, BigId


class Product(Base):
    """A policy type at one request-schema version (`policy_type`, `policy_type_version`)."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    policy_type: Mapped[str] = mapped_column(String(64))
    policy_type_version: Mapped[int]
    policy_name: Mapped[str] = mapped_column(String(200))
    current_version_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("policy_type", "policy_type_version"),)


class ProductVersion(Base):
    """An immutable revision of a product. Quotes point at the revision they were priced with,
    so loading a new one never changes a policy already sold."""

    __tablename__ = "product_versions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="RESTRICT"))
    revision: Mapped[int]
    definition: Mapped[dict[str, Any]]
    checksum: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("product_id", "revision"),)


class FxRate(Base):
    """Units of `currency` per one unit of `base_currency`, as decimal text."""

    __tablename__ = "fx_rates"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    base_currency: Mapped[str] = mapped_column(String(3))
    rate: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[datetime]
