"""Sandbox test clocks: each partner's sandbox runs on real time plus an offset that only
moves forward. Live data always runs on real time."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.db.engine import Database
from coverline.kit.clock import Clock
from coverline.sandbox.models import SandboxClock


class Clocks:
    """Read-through cache of the partners' sandbox offsets (a second of staleness at most
    across processes; none in the process that moved the clock)."""

    def __init__(self, database: Database, clock: Clock, ttl: float = 1.0) -> None:
        self._database = database
        self.clock = clock
        self._ttl = ttl
        self._offsets: dict[int, timedelta] = {}
        self._loaded_at = float("-inf")

    def forget(self) -> None:
        self._loaded_at = float("-inf")

    async def offsets(self) -> dict[int, timedelta]:
        if time.monotonic() - self._loaded_at >= self._ttl:
            async with self._database.reading() as session:
                rows = await session.scalars(select(SandboxClock))
                self._offsets = {
                    row.partner_id: timedelta(seconds=row.offset_seconds) for row in rows
                }
            self._loaded_at = time.monotonic()
        return self._offsets

    async def now_for(self, partner_id: int, mode: str) -> datetime:
        now = self.clock.now()
        if mode != "sandbox":
            return now
        return now + (await self.offsets()).get(partner_id, timedelta(0))


async def current_offset(session: AsyncSession, partner_id: int) -> timedelta:
    row = await session.get(SandboxClock, partner_id)
    return timedelta(seconds=row.offset_seconds) if row is not None else timedelta(0)


async def set_offset(
    session: AsyncSession, partner_id: int, offset: timedelta, now: datetime
) -> None:
    row = await session.get(SandboxClock, partner_id, with_for_update=True)
    if row is None:
        session.add(
            SandboxClock(
                partner_id=partner_id, offset_seconds=offset.total_seconds(), updated_at=now
            )
        )
    else:
        row.offset_seconds = offset.total_seconds()
        row.updated_at = now
