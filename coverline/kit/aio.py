"""Small asyncio helpers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from coverline.kit.request_id import bound_request_id, new_job_id


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep for `seconds`, or less when `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def keep_stepping(
    stop: asyncio.Event,
    step: Callable[[], Awaitable[object]],
    poll_seconds: float,
    log: logging.Logger,
    what: str,
) -> None:
    """Call `step` until `stop` is set; pause between idle steps (a falsy result). A failing
    step is logged and the loop goes on: a worker never dies of one bad turn.

    Each step is a job with an id of its own: its log lines and the events it writes (a
    scheduler pass's renewal events) carry it as their request id.
    """
    while not stop.is_set():
        with bound_request_id(new_job_id()):
            try:
                busy = bool(await step())
            except Exception:
                log.exception("%s failed", what)
                busy = False
        if not busy:
            await pause(stop, poll_seconds)
