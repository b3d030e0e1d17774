"""The process's SQLite write lock: first come, first served, but those that ask `first` (the
dispatcher's turn) go ahead; a cancelled waiter never keeps the lock from the others."""

from __future__ import annotations

import asyncio

from coverline.db.engine import WriteLock


async def _take(lock: WriteLock, name: str, order: list[str], *, first: bool = False) -> None:
    async with lock.held(first=first):
        order.append(name)
        await asyncio.sleep(0)


async def test_waiters_in_order_of_arrival_those_asking_first_ahead() -> None:
    lock = WriteLock()
    order: list[str] = []
    async with lock.held():
        tasks = []
        for name, first in (("a", False), ("b", True), ("c", False), ("d", True)):
            tasks.append(asyncio.create_task(_take(lock, name, order, first=first)))
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        # Nobody takes a held lock.
        assert order == []
        assert lock.locked
    await asyncio.gather(*tasks)
    assert order == ["b", "d", "a", "c"]
    assert not lock.locked


async def test_a_newcomer_waits_behind_the_waiter_the_lock_was_handed_to() -> None:
    lock = WriteLock()
    order: list[str] = []
    async with lock.held():
        waiting = asyncio.create_task(_take(lock, "waiting", order))
        await asyncio.sleep(0)
    # Released: handed to the waiter, which has not run yet; a newcomer does not barge in.
    assert lock.locked
    await _take(lock, "newcomer", order)
    await waiting
    assert order == ["waiting", "newcomer"]
    assert not lock.locked


async def test_a_waiter_cancelled_while_waiting_is_passed_over() -> None:
    lock = WriteLock()
    order: list[str] = []
    async with lock.held():
        cancelled = asyncio.create_task(_take(lock, "cancelled", order, first=True))
        other = asyncio.create_task(_take(lock, "other", order))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
    await asyncio.wait_for(other, 1)
    assert order == ["other"]
    assert not lock.locked


async def test_a_waiter_cancelled_once_handed_the_lock_hands_it_on() -> None:
    lock = WriteLock()
    order: list[str] = []
    async with lock.held():
        handed = asyncio.create_task(_take(lock, "handed", order))
        other = asyncio.create_task(_take(lock, "other", order))
        await asyncio.sleep(0)
    # The lock is now the first waiter's; it is cancelled before it could run.
    handed.cancel()
    assert (await asyncio.gather(handed, return_exceptions=True))[0].__class__ is (
        asyncio.CancelledError
    )
    await asyncio.wait_for(other, 1)
    assert order == ["other"]
    assert not lock.locked


async def test_an_error_inside_releases_the_lock() -> None:
    lock = WriteLock()
    try:
        async with lock.held():
            raise ValueError("inside")
    except ValueError:
        pass
    assert not lock.locked
    order: list[str] = []
    await asyncio.wait_for(_take(lock, "after", order), 1)
    assert order == ["after"]
