"""Idempotency keys (API-CONTRACT §5).

A key is reserved in its own short transaction, so that a concurrent repeat sees it at once
(423). The response is stored in the SAME transaction as the state change it describes: a
crash can never leave a change without its stored response, nor a stored response without
its change. A failed request releases its key so that a corrected retry may use it.

Stored responses are encrypted with the master key: some carry secrets shown only once (a new
API key's secret, a webhook endpoint's signing secret), and all carry customers' data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

import orjson
from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.config import Settings
from coverline.db.engine import Database
from coverline.db.prepared import Prepared
from coverline.kit.errors import Locked, ValidationFailed
from coverline.partners.auth import Principal
from coverline.partners.crypto import SecretBox
from coverline.partners.models import IdempotencyKey

Work = Callable[[AsyncSession], Awaitable[tuple[int, Any]]]

KEYS = cast(Table, IdempotencyKey.__table__)


class Existing(NamedTuple):
    """A key found already reserved."""

    id: int
    state: str
    request_digest: str
    locked_at: datetime
    expires_at: datetime
    response_body: dict[str, Any] | None


# Every write runs them: compiled once, run on the driver's connection where it can.
FIND = Prepared(
    select(*(KEYS.c[name] for name in Existing._fields)).where(
        KEYS.c.partner_id == bindparam("partner_id"),
        KEYS.c.mode == bindparam("mode"),
        KEYS.c.key == bindparam("key"),
    )
)
RESERVE = Prepared(
    insert(KEYS).returning(KEYS.c.id),
    keys=(
        "partner_id",
        "mode",
        "key",
        "request_digest",
        "state",
        "locked_at",
        "created_at",
        "expires_at",
    ),
)
TAKE_OVER = Prepared(delete(KEYS).where(KEYS.c.id == bindparam("reservation")))
RELEASE = TAKE_OVER
DONE = Prepared(
    update(KEYS)
    .where(KEYS.c.id == bindparam("reservation"))
    .values(state="done", response_status=bindparam("status"), response_body=bindparam("body"))
)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: Any
    replayed: bool = False


def request_digest(method: str, path: str, body: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(f"{method.upper()} {path.rstrip('/')}\n".encode())
    digest.update(body)
    return digest.hexdigest()


class Idempotency:
    def __init__(self, database: Database, settings: Settings, box: SecretBox) -> None:
        self._database = database
        self._box = box
        self._ttl = timedelta(hours=settings.idempotency_ttl_hours)
        self._lock = timedelta(seconds=settings.idempotency_lock_seconds)

    async def run(
        self,
        principal: Principal,
        key: str | None,
        digest: str,
        work: Work,
        now: datetime,
    ) -> Outcome:
        if key is None:
            async with self._database.transaction() as session:
                status, body = await work(session)
            return Outcome(status, body)

        if not 1 <= len(key) <= 255:
            raise ValidationFailed(
                errors={"x-idempotency-key": ["An idempotency key has 1 to 255 characters."]}
            )
        reservation = await self._reserve(principal, key, digest, now)
        if isinstance(reservation, Outcome):
            return reservation
        try:
            async with self._database.transaction() as session:
                status, body = await work(session)
                connection = await session.connection()
                await DONE.execute(
                    connection,
                    {"reservation": reservation, "status": status, "body": self._seal(body)},
                )
        except BaseException:
            async with self._database.transaction() as session:
                connection = await session.connection()
                await RELEASE.execute(connection, {"reservation": reservation})
            raise
        return Outcome(status, body)

    async def _reserve(
        self, principal: Principal, key: str, digest: str, now: datetime
    ) -> int | Outcome:
        for _attempt in range(3):
            try:
                async with self._database.transaction() as session:
                    connection = await session.connection()
                    found = {"partner_id": principal.partner_id, "mode": principal.mode}
                    rows = await FIND.execute(connection, {**found, "key": key})
                    if rows:
                        existing = Existing(*rows[0])
                        decided = self._decide(existing, digest, now)
                        if decided is not None:
                            return decided
                        # Expired, or abandoned by a crashed request: take it over.
                        await TAKE_OVER.execute(connection, {"reservation": existing.id})
                    [(reserved,)] = await RESERVE.execute(
                        connection,
                        {
                            **found,
                            "key": key,
                            "request_digest": digest,
                            "state": "in_flight",
                            "locked_at": now,
                            "created_at": now,
                            "expires_at": now + self._ttl,
                        },
                    )
                    return int(reserved)
            except IntegrityError:
                continue
        raise Locked()

    def _decide(self, existing: Existing, digest: str, now: datetime) -> Outcome | None:
        if existing.expires_at <= now:
            return None
        if existing.state == "in_flight" and existing.locked_at + self._lock <= now:
            return None
        if existing.request_digest != digest:
            raise ValidationFailed(
                "This idempotency key was used with a different request.",
                errors={"x-idempotency-key": ["Keys must not be reused for other requests."]},
            )
        if existing.state == "in_flight":
            raise Locked()
        return Outcome(409, self._unseal(existing.response_body or {}), replayed=True)

    def _seal(self, body: Any) -> dict[str, Any]:
        return {"sealed": self._box.encrypt(orjson.dumps(body).decode())}

    def _unseal(self, stored: dict[str, Any]) -> Any:
        if "sealed" not in stored:
            # Stored in clear by earlier versions, until those keys expire.
            return stored.get("body")
        return orjson.loads(self._box.decrypt(stored["sealed"]))

    async def purge_expired(self, now: datetime) -> int:
        async with self._database.transaction() as session:
            result = await session.execute(
                delete(IdempotencyKey).where(IdempotencyKey.expires_at <= now)
            )
        return int(getattr(result, "rowcount", 0) or 0)
