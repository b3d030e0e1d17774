"""Iterators over every item of a paginated list (`limit`/`offset` pages)."""

from __future__ import annotations

from typing import AsyncIterator, Awaitable, Callable, Iterator, TypeVar

from ._models import Page

T = TypeVar("T")


def _done(page: Page[T], offset: int) -> bool:
    if not page.results:
        return True
    if "next" in page.raw and page.next is None:
        return True
    return offset >= page.count


def iterate_pages(fetch: Callable[[int, int], Page[T]], page_size: int) -> Iterator[T]:
    """Every item, fetching `page_size` at a time: `fetch(limit, offset)` gets one page.

    Offsets are counted on the server's order: items created while iterating may shift
    pages, so an item can be seen twice or missed; iterate again for an exact snapshot.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1.")
    offset = 0
    while True:
        page = fetch(page_size, offset)
        yield from page.results
        offset += len(page.results)
        if _done(page, offset):
            return


async def aiterate_pages(
    fetch: Callable[[int, int], Awaitable[Page[T]]], page_size: int
) -> AsyncIterator[T]:
    """The asynchronous twin of `iterate_pages`."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1.")
    offset = 0
    while True:
        page = await fetch(page_size, offset)
        for item in page.results:
            yield item
        offset += len(page.results)
        if _done(page, offset):
            return
