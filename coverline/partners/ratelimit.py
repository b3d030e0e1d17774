"""Rate limits per partner and mode (API-CONTRACT §3: 429 with Retry-After and X-Ratelimit-*).

In-process memory when embedded; Redis when `COVERLINE_REDIS_URL` is set, so that every API
process draws on one budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from coverline.config import Settings
from coverline.kit.errors import RateLimited
from coverline.partners.auth import Principal


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
        self._storage = storage_from_string(uri)
        self._limiter = SlidingWindowCounterRateLimiter(self._storage)
        self._default = settings.rate_limit

    async def check(self, principal: Principal) -> RateLimitState:
        item = _parse(principal.rate_limit or self._default)
        identity = (principal.partner_code, principal.mode)
        allowed = await self._limiter.hit(item, *identity)
        stats = await self._limiter.get_window_stats(item, *identity)
        state = RateLimitState(item.amount, max(0, stats.remaining), math.ceil(stats.reset_time))
        if not allowed:
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(
                f"Rate limit of {item.amount} requests per {item.GRANULARITY.name} exceeded.",
                headers={**state.headers(), "Retry-After": str(retry_after)},
            )
        return state
