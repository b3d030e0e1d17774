"""Sandbox test clocks: each partner's sandbox runs on real time plus an offset that only
moves forward. Live data always runs on real time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from dateutil.relativedelta import relativedelta
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
                self._offsets = {row.partner_id: _offset(row) for row in rows}
            self._loaded_at = time.monotonic()
        return self._offsets

    async def now_for(self, partner_id: int, mode: str) -> datetime:
        now = self.clock.now()
        if mode != "sandbox":
            return now
        return now + (await self.offsets()).get(partner_id, timedelta(0))


# How far ahead of real time a test clock may go: a century of renewals is plenty, and every
# date counted from the clock (grace periods, reports, the schedulers' scans) stays a date.
HORIZON = timedelta(days=36525)
TOO_FAR = "The test clock moves at most 100 years ahead of real time."


def ahead(moment: datetime, duration: timedelta | relativedelta) -> datetime:
    """`moment + duration`, or the last moment there is when that is past year 9999."""
    try:
        return moment + duration
    except (OverflowError, ValueError):
        return datetime.max.replace(tzinfo=UTC)


def refused_move(target: datetime, current: datetime, real_now: datetime) -> str | None:
    """Why the clock cannot move from `current` to `target`; None when it can."""
    if target <= current:
        return "The clock only moves forward."
    if target - real_now > HORIZON:
        return TOO_FAR
    return None


def out_of_calendar(text: str) -> str | None:
    """Why a target that did not parse cannot be used, when it is a well-formed date-time at
    an end of the calendar (year 1 or 9999, which no date counted from it survives); None
    when it is not a date-time at all."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return TOO_FAR if moment.year > 1 else "The clock only moves forward."


async def current_offset(session: AsyncSession, partner_id: int) -> timedelta:
    row = await session.get(SandboxClock, partner_id)
    return _offset(row) if row is not None else timedelta(0)


def _offset(row: SandboxClock) -> timedelta:
    # A clock set past the horizon before there was one counts as at the horizon.
    return min(timedelta(seconds=row.offset_seconds), HORIZON)


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
