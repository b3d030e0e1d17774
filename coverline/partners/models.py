from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from coverline.db.base import Base, BigId

MODES = ("sandbox", "live")


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(5), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")
    bearer_enabled: Mapped[bool] = mapped_column(default=True)
    allow_hmac_sha1: Mapped[bool] = mapped_column(default=False)
    rate_limit: Mapped[str | None] = mapped_column(String(64), default=None)
    support_email: Mapped[str | None] = mapped_column(String(320), default=None)
    created_at: Mapped[datetime]


class ApiCredential(Base):
    """One API key and its secret, for one partner in one mode.

    The secret is stored encrypted (it keys the HMAC of signed requests, so it must be
    recoverable) and as a SHA-256 digest for Bearer look-ups; never in clear text.
    """

    __tablename__ = "api_credentials"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    api_key: Mapped[str] = mapped_column(String(64), unique=True)
    secret_ciphertext: Mapped[str] = mapped_column(String(512))
    secret_digest: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_api_credentials_partner_mode", "partner_id", "mode"),)


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("partners.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(255))
    request_digest: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # in_flight | done
    locked_at: Mapped[datetime]
    response_status: Mapped[int | None] = mapped_column(default=None)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)

    __table_args__ = (UniqueConstraint("partner_id", "mode", "key"),)
