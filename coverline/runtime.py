"""The long-lived objects of one process, built once from the settings."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp.resolver import DefaultResolver

from coverline.catalog.service import Catalog
from coverline.config import Settings
from coverline.db.engine import Database
from coverline.kit.clock import Clock
from coverline.partners.auth import Authenticator
from coverline.partners.crypto import SecretBox
from coverline.partners.idempotency import Idempotency
from coverline.partners.ratelimit import RateLimiter
from coverline.sandbox.service import Clocks
from coverline.webhooks.network import ResolverFactory


@dataclass
class Services:
    settings: Settings
    database: Database
    box: SecretBox
    clock: Clock
    authenticator: Authenticator
    rate_limiter: RateLimiter
    idempotency: Idempotency
    catalog: Catalog
    clocks: Clocks
    # How webhook host names are resolved, when saved and when sent to.
    webhook_resolver: ResolverFactory = DefaultResolver

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> Services:
        database = Database(settings.resolved_database_url)
        box = SecretBox.from_settings(settings)
        clock = clock or Clock()
        return cls(
            settings=settings,
            database=database,
            box=box,
            clock=clock,
            authenticator=Authenticator(database, box, settings),
            rate_limiter=RateLimiter(settings),
            idempotency=Idempotency(database, settings, box),
            catalog=Catalog(database),
            clocks=Clocks(database, clock),
        )

    async def close(self) -> None:
        await self.database.dispose()
