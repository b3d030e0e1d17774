"""Dashboard users, passwords (argon2id), server-side sessions, CSRF tokens and the sign-in
lock-out.

A session cookie holds a random token; the database keeps only its SHA-256, so a copy of the
database cannot be replayed as a cookie. Every session has its own CSRF token, which every
form posts back. Five failed sign-ins within 15 minutes lock an account for 15 minutes; the
answer to a failed sign-in is the same whether the e-mail exists, the password is wrong or
the account is locked, and unknown e-mails cost one password hash too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.dashboard.models import DashboardSession, DashboardUser
from coverline.db.engine import Database
from coverline.kit.errors import Conflict, ValidationFailed
from coverline.kit.validation import normalise_email
from coverline.partners.models import Partner

SESSION_COOKIE = "coverline_session"
SIGN_IN_COOKIE = "coverline_sign_in"
CSRF_FIELD = "csrf_token"
PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 1024
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCK_DURATION = timedelta(minutes=15)
SIGN_IN_FAILED = (
    "The e-mail address or password is not right, or the account is locked for 15 minutes "
    "after 5 failed attempts. Check both and try again."
)

_hasher = PasswordHasher()


@cache
def _decoy_hash() -> str:
    """A hash to verify against for unknown e-mails, so both answers take as long."""
    return _hasher.hash(secrets.token_urlsafe(24))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(password_hash: str, password: str) -> bool:
    """argon2 takes tens of milliseconds of CPU: off the event loop."""
    return await asyncio.to_thread(_verify, password_hash, password)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def generated_password() -> str:
    return secrets.token_urlsafe(15)


def check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValidationFailed(
            errors={"password": [f"A password has at least {PASSWORD_MIN_LENGTH} characters."]}
        )
    if len(password) > PASSWORD_MAX_LENGTH:
        raise ValidationFailed(
            errors={"password": [f"A password has at most {PASSWORD_MAX_LENGTH} characters."]}
        )


def normalised_email(email: str) -> str:
    try:
        return normalise_email(email.strip()).lower()
    except ValueError as exc:
        raise ValidationFailed(errors={"email": [str(exc)]}) from None


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    partner: Partner | None,
    is_operator: bool,
    now: datetime,
    must_change_password: bool = False,
) -> DashboardUser:
    address = normalised_email(email)
    if partner is None and not is_operator:
        raise ValidationFailed(
            errors={"partner": ["A user who is not an operator needs a partner."]}
        )
    check_password(password)
    existing = await session.scalar(select(DashboardUser.id).where(DashboardUser.email == address))
    if existing is not None:
        raise Conflict(f"A dashboard user with e-mail {address} exists already.")
    user = DashboardUser(
        email=address,
        password_hash=await asyncio.to_thread(hash_password, password),
        partner_id=partner.id if partner is not None else None,
        is_operator=is_operator,
        must_change_password=must_change_password,
        failed_logins=0,
        created_at=now,
    )
    session.add(user)
    await session.flush()
    return user


def is_locked(user: DashboardUser, now: datetime) -> bool:
    return user.locked_until is not None and user.locked_until > now


def _record_failure(user: DashboardUser, now: datetime) -> None:
    if user.first_failed_at is None or now - user.first_failed_at > FAILURE_WINDOW:
        user.first_failed_at = now
        user.failed_logins = 0
    user.failed_logins += 1
    if user.failed_logins >= MAX_FAILURES:
        user.locked_until = now + LOCK_DURATION
        user.failed_logins = 0
        user.first_failed_at = None


@dataclass(frozen=True)
class OpenedSession:
    token: str
    row: DashboardSession
    user: DashboardUser


async def sign_in(
    database: Database, *, email: str, password: str, now: datetime, session_hours: float
) -> OpenedSession | None:
    """A new session for the right e-mail and password of an unlocked account, else None."""
    # The address as it was stored: normalised (an IDN domain in Unicode, NFC) and lower case.
    try:
        address = normalised_email(email)
    except ValidationFailed:
        address = email.strip().lower()
    async with database.reading() as session:
        user = await session.scalar(select(DashboardUser).where(DashboardUser.email == address))
    if user is None:
        await verify_password(_decoy_hash(), password)
        return None
    # Verified outside any transaction: a write lock is never held across the hash.
    valid = await verify_password(user.password_hash, password)
    async with database.transaction() as session:
        locked_user = await session.get(DashboardUser, user.id, with_for_update=True)
        if locked_user is None:
            return None
        if is_locked(locked_user, now):
            return None
        if not valid:
            _record_failure(locked_user, now)
            return None
        locked_user.failed_logins = 0
        locked_user.first_failed_at = None
        locked_user.locked_until = None
        locked_user.last_signed_in_at = now
        if _hasher.check_needs_rehash(locked_user.password_hash):
            locked_user.password_hash = await asyncio.to_thread(hash_password, password)
        opened = await open_session(session, locked_user, now, session_hours)
    return opened


async def open_session(
    session: AsyncSession, user: DashboardUser, now: datetime, hours: float
) -> OpenedSession:
    token = new_token()
    row = DashboardSession(
        token_hash=token_digest(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        mode="sandbox",
        partner_id=user.partner_id,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
    )
    session.add(row)
    await session.flush()
    return OpenedSession(token, row, user)


async def load_session(
    session: AsyncSession, token: str, now: datetime
) -> tuple[DashboardSession, DashboardUser] | None:
    row = (
        await session.execute(
            select(DashboardSession, DashboardUser)
            .join(DashboardUser, DashboardUser.id == DashboardSession.user_id)
            .where(DashboardSession.token_hash == token_digest(token))
        )
    ).first()
    if row is None:
        return None
    dashboard_session, user = row
    if dashboard_session.expires_at <= now:
        return None
    return dashboard_session, user


async def close_session(session: AsyncSession, token: str, now: datetime) -> None:
    await session.execute(
        delete(DashboardSession).where(
            (DashboardSession.token_hash == token_digest(token))
            | (DashboardSession.expires_at <= now)
        )
    )


async def change_password(
    session: AsyncSession,
    user_id: int,
    *,
    current: str,
    new: str,
    keep_session_id: int,
) -> None:
    """A new password; every other session of the user is signed out."""
    user = await session.get(DashboardUser, user_id, with_for_update=True)
    if user is None or not await verify_password(user.password_hash, current):
        raise ValidationFailed(errors={"current_password": ["The current password is not right."]})
    check_password(new)
    user.password_hash = await asyncio.to_thread(hash_password, new)
    user.must_change_password = False
    await session.execute(
        delete(DashboardSession).where(
            DashboardSession.user_id == user_id, DashboardSession.id != keep_session_id
        )
    )
