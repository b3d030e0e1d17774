"""What a dispatcher holds: its settings, the configuration of each endpoint it sends to,
its claims and their results, and a queue per endpoint."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import aiohttp

# How much of the lease a queue may take to drain, and how fast response times are forgotten.
LEASE_SHARE = 1 / 3
DURATION_WEIGHT = 0.2


@dataclass(frozen=True)
class DispatchSettings:
    allow_private_networks: bool = False
    # Most deliveries leased for one endpoint in one turn, and in all.
    batch_size: int = 256
    max_leased: int = 2048
    max_in_flight: int = 256
    per_endpoint: int = 16
    default_timeout: float = 15.0
    lease_seconds: float = 90.0
    poll_seconds: float = 0.1
    idle_poll_seconds: float = 0.5
    # Turns are spaced so that one transaction records many results.
    turn_seconds: float = 0.005
    record_seconds: float = 0.02
    record_batch: int = 128
    jitter: float = 0.1
    disable_after: timedelta = timedelta(hours=24)
    disable_after_failures: int = 10


@dataclass(frozen=True)
class EndpointConfig:
    id: int
    public_id: str
    url: str
    format: str
    signature: str
    key: str
    secrets: list[str]
    schedule: tuple[float, ...]
    timeout: float
    max_concurrency: int
    version: datetime
    client_timeout: aiohttp.ClientTimeout
    # Why every send to this URL is refused (a literal private address, nothing to sign
    # with), if it is.
    refused: str | None
    # When the previous secret of a rotation stops signing (a Unix time), if there is one:
    # `secrets[1:]` sign until then, however long the config is kept.
    previous_until: float | None = None

    def signing_secrets(self, now: float) -> list[str]:
        if self.previous_until is not None and now >= self.previous_until:
            return self.secrets[:1]
        return self.secrets


# Not frozen: a frozen dataclass sets each field through `object.__setattr__`, and a claim is
# made for every delivery sent. Nothing changes one once made.
@dataclass(slots=True)
class Claim:
    delivery_id: int
    public_id: str
    name: str
    part: int
    attempts: int
    failures: int
    # The bytes to send; None for a delivery made before bodies were stored, rendered from
    # its event (`event_type`, `payload`) when sent.
    body: bytes | None
    # The API request (or job) whose event this is, and when the delivery was made.
    request_id: str | None
    created_at: datetime
    event_type: str = ""
    payload: dict[str, Any] | None = None


@dataclass
class Result:
    claim: Claim
    endpoint: EndpointConfig
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    excerpt: str | None
    error: str | None
    request_headers: dict[str, str]
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass
class EndpointQueue:
    """The deliveries of one endpoint that this worker has leased and not yet sent."""

    config: EndpointConfig
    waiting: deque[Claim] = field(default_factory=deque)
    in_flight: int = 0
    # Seconds an attempt took, smoothed; starts pessimistic (the timeout).
    duration: float = 1.0
    # The last claim found nothing more due: claim again on a wake-up or a poll.
    exhausted: bool = False
    # Half the queue has drained since the last claim and the loop was told so.
    asked: bool = False
    retired: bool = False

    def target(self, settings: DispatchSettings) -> int:
        """How many deliveries this endpoint may hold: what it sends within a share of the
        lease at its recent pace, at least one round of its concurrency."""
        cap = self.config.max_concurrency
        pace = cap * settings.lease_seconds * LEASE_SHARE / max(self.duration, 0.001)
        return int(max(cap, min(settings.batch_size, pace)))

    def room(self, settings: DispatchSettings) -> int:
        return self.target(settings) - len(self.waiting) - self.in_flight

    @property
    def held(self) -> int:
        return len(self.waiting) + self.in_flight
