"""Loading the catalogue and finding the product revisions that price quotes."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.catalog.definition import CatalogDocument, ProductDefinition
from coverline.catalog.models import FxRate, Product, ProductVersion
from coverline.catalog.rating import FxTable
from coverline.db.engine import Database


@dataclass(frozen=True)
class LoadedProduct:
    policy_type: str
    policy_type_version: int
    version_id: str
    revision: int
    created: bool


def _checksum(definition: ProductDefinition) -> str:
    canonical = json.dumps(
        definition.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def load_catalog(
    session: AsyncSession, document: CatalogDocument, now: datetime
) -> list[LoadedProduct]:
    """Add a revision for every product whose definition changed; unchanged ones stay."""
    loaded = []
    for definition in document.products:
        product = await session.scalar(
            select(Product).where(
                Product.policy_type == definition.policy_type,
                Product.policy_type_version == definition.policy_type_version,
            )
        )
        if product is None:
            product = Product(
                policy_type=definition.policy_type,
                policy_type_version=definition.policy_type_version,
                policy_name=definition.policy_name,
                created_at=now,
                updated_at=now,
            )
            session.add(product)
            await session.flush()
        checksum = _checksum(definition)
        current = (
            await session.get(ProductVersion, product.current_version_id)
            if product.current_version_id
            else None
        )
        if current is not None and current.checksum == checksum:
            loaded.append(
                LoadedProduct(
                    definition.policy_type,
                    definition.policy_type_version,
                    current.id,
                    current.revision,
                    created=False,
                )
            )
            continue
        revision = (current.revision + 1) if current is not None else 1
        version = ProductVersion(
            id=str(uuid.uuid4()),
            product_id=product.id,
            revision=revision,
            definition=definition.model_dump(mode="json"),
            checksum=checksum,
            created_at=now,
        )
        session.add(version)
        await session.flush()
        product.current_version_id = version.id
        product.policy_name = definition.policy_name
        product.updated_at = now
        loaded.append(
            LoadedProduct(
                definition.policy_type, definition.policy_type_version, version.id, revision, True
            )
        )
    if document.fx is not None:
        for currency, rate in document.fx.rates.items():
            row = await session.get(FxRate, currency)
            if row is None:
                session.add(
                    FxRate(
                        currency=currency,
                        base_currency=document.fx.base,
                        rate=str(rate),
                        updated_at=now,
                    )
                )
            else:
                row.base_currency = document.fx.base
                row.rate = str(rate)
                row.updated_at = now
    return loaded


@dataclass(frozen=True)
class ResolvedProduct:
    version_id: str
    definition: ProductDefinition


class Catalog:
    """Read-through cache of the catalogue.

    Revisions never change, so they are kept for the life of the process; which revision is
    current, and the FX table, are re-read after `ttl` seconds so that a `catalog load` in
    another process is seen shortly after.
    """

    def __init__(self, database: Database, ttl: float = 5.0) -> None:
        self._database = database
        self._ttl = ttl
        self._versions: dict[str, ProductDefinition] = {}
        self._current: dict[tuple[str, int], ResolvedProduct] = {}
        self._fx = FxTable(None, {})
        self._loaded_at = float("-inf")

    def forget(self) -> None:
        self._loaded_at = float("-inf")

    async def _refresh(self) -> None:
        if time.monotonic() - self._loaded_at < self._ttl:
            return
        async with self._database.reading() as session:
            rows = (
                await session.execute(
                    select(Product, ProductVersion).join(
                        ProductVersion, ProductVersion.id == Product.current_version_id
                    )
                )
            ).all()
            fx_rows = list(await session.scalars(select(FxRate)))
        current = {}
        for product, version in rows:
            definition = self._versions.get(version.id)
            if definition is None:
                definition = ProductDefinition.model_validate(version.definition)
                self._versions[version.id] = definition
            current[(product.policy_type, product.policy_type_version)] = ResolvedProduct(
                version.id, definition
            )
        self._current = current
        base = fx_rows[0].base_currency if fx_rows else None
        self._fx = FxTable(base, {row.currency: Decimal(row.rate) for row in fx_rows})
        self._loaded_at = time.monotonic()

    async def current(self, policy_type: str, policy_type_version: int) -> ResolvedProduct | None:
        await self._refresh()
        return self._current.get((policy_type, policy_type_version))

    async def fx(self) -> FxTable:
        await self._refresh()
        return self._fx

    async def definitions(self, version_ids: set[str]) -> dict[str, ProductDefinition]:
        missing = [vid for vid in version_ids if vid not in self._versions]
        if missing:
            async with self._database.reading() as session:
                rows = await session.scalars(
                    select(ProductVersion).where(ProductVersion.id.in_(missing))
                )
                for version in rows:
                    self._versions[version.id] = ProductDefinition.model_validate(
                        version.definition
                    )
        return {vid: self._versions[vid] for vid in version_ids}
