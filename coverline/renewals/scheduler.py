"""The renewal scheduler: moves renewals along the clock, in batches, exactly once each.

Live data and sandboxes without a test clock run on real time; each sandbox test clock runs
its partner's sandbox on that clock's time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from coverline.db.engine import Database
from coverline.kit.aio import keep_stepping
from coverline.observability import metrics
from coverline.renewals.service import Transition, run_due
from coverline.sandbox.service import Clocks

log = logging.getLogger("coverline.renewals")


class Scheduler:
    def __init__(
        self, database: Database, clocks: Clocks, *, batch: int = 500, poll_seconds: float = 1.0
    ) -> None:
        self._database = database
        self._clocks = clocks
        self._batch = batch
        self._poll = poll_seconds

    async def run(self, stop: asyncio.Event) -> None:
        await keep_stepping(stop, self.run_once, self._poll, log, "renewal scheduler pass")

    async def run_once(self) -> list[Transition]:
        """One batch for real time, one per sandbox test clock."""
        now = self._clocks.clock.now()
        offsets = await self._clocks.offsets()
        done: list[Transition] = []
        async with self._database.transaction() as session:
            batch = await run_due(
                session, until=now, skip_sandbox_of=list(offsets), limit=self._batch
            )
        _observe(batch, now)
        done += batch
        for partner_id, offset in offsets.items():
            async with self._database.transaction() as session:
                batch = await run_due(
                    session, until=now + offset, partner_id=partner_id, limit=self._batch
                )
            _observe(batch, now + offset)
            done += batch
        return done

    async def drain(self) -> int:
        """Run until nothing is due (benchmarks, tests and the CLI)."""
        total = 0
        while transitions := await self.run_once():
            total += len(transitions)
        return total


def _observe(transitions: Sequence[Transition], now: datetime) -> None:
    """After the commit: the lag of each transition, on the clock it was due by."""
    for transition in transitions:
        metrics.renewal_transition(transition.type.value, (now - transition.at).total_seconds())
