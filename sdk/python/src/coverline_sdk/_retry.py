"""When to retry a request and how long to wait first."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Optional

RETRY_STATUSES = frozenset({423, 429, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries.

    A request is retried on connection errors and timeouts and on the statuses 423, 429,
    502, 503 and 504, at most `max_retries` times. Before each retry it waits the server's
    `Retry-After` when there is one, otherwise an exponential backoff from `initial_backoff`
    seconds, doubling up to `max_backoff`, less up to a quarter of jitter. A `Retry-After`
    longer than `max_retry_after` seconds is not waited for: the error is raised at once.
    Every retry is signed afresh (a new Date) and keeps the request's idempotency key.
    """

    max_retries: int = 3
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, retry: int) -> float:
        """The wait before retry number `retry` (0 for the first) without a Retry-After."""
        delay: float = min(self.max_backoff, self.initial_backoff * 2.0**retry)
        return delay * (1 - 0.25 * random.random())

    def delay(self, retry: int, retry_after: Optional[float]) -> Optional[float]:
        """Seconds to wait before retry number `retry`, or None when not to retry."""
        if retry >= self.max_retries:
            return None
        if retry_after is None:
            return self.backoff(retry)
        if retry_after > self.max_retry_after:
            return None
        return retry_after


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """`Retry-After` in seconds: a number of seconds or an HTTP date; None when absent or
    unreadable."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None:
            return None
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)
