"""Rate limits per partner and mode (API-CONTRACT §3: 429 with Retry-After and X-Ratelimit-*).

In-process memory when embedded; Redis when `COVERLINE_REDIS_URL` is set, so that every API
process draws on one budget.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from coverline.config import Settings
from coverline.kit.errors import RateLimited, ServiceUnavailable
from coverline.partners.auth import Principal

log = logging.getLogger("coverline.ratelimit")


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        return {
            "X-Ratelimit-Limit": str(self.limit),
            "X-Ratelimit-Remaining": str(self.remaining),
            "X-Ratelimit-Reset": str(self.reset),
        }


@lru_cache(maxsize=256)
def _parse(limit: str) -> RateLimitItem:
    return parse(limit)


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        uri = f"async+{settings.redis_url}" if settings.redis_url else "async+memory://"
        self.shared = settings.redis_url is not None
        # Failures of the store as limits' StorageError, whichever client it uses (coredis).
        self._storage = storage_from_string(uri, wrap_exceptions=True)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._default = settings.rate_limit

    async def check(self, principal: Principal) -> RateLimitState:
        item = _parse(principal.rate_limit or self._default)
        identity = (principal.partner_code, principal.mode)
        try:
            allowed = await self._limiter.hit(item, *identity)
            stats = await self._limiter.get_window_stats(item, *identity)
        except (StorageError, OSError) as exc:
            # Redis out of reach is a moment's outage, as the database's is: 503, retry.
            log.warning("rate limit store unreachable: %s", exc)
            raise ServiceUnavailable(
                "The rate limit store cannot be reached; try again shortly.",
                headers={"Retry-After": "1"},
            ) from None
        state = RateLimitState(item.amount, max(0, stats.remaining), math.ceil(stats.reset_time))
        if not allowed:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(
                f"Rate limit of {item.amount} requests per {item.GRANULARITY.name} exceeded.",
                headers={**state.headers(), "Retry-After": str(retry_after)},
            )
        return state

    async def reachable(self) -> bool:
        """Whether the store answers (Redis; memory always does)."""
        try:
            answer = self._storage.check()  # a coroutine for the async storages used here
            return bool(await answer if inspect.isawaitable(answer) else answer)
        except (StorageError, OSError):
            return False
