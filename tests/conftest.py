from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from coverline.app import create_app
from coverline.catalog.definition import load_catalog_file
from coverline.catalog.service import load_catalog
from coverline.cli import DEMO_CATALOG
from coverline.config import Settings
from coverline.db.migrate import upgrade
from coverline.db.models import metadata
from coverline.partners.service import create_partner
from coverline.runtime import Services
from tests.fixtures.database import backend, fresh_database
from tests.fixtures.signing import signed_headers

pytest_plugins = ["tests.fixtures.webhooks"]

MASTER_KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("coverline")


@pytest.fixture(scope="session")
async def database_url(tmp_root: Path) -> AsyncIterator[str]:
    async with fresh_database(tmp_root) as url:
        await upgrade(url)
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_root: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_root,
        master_key=MASTER_KEY,
        rate_limit="1000/second",
        public_url="https://cover.test",
        webhooks_allow_private_networks=True,
    )


@pytest.fixture(scope="session")
async def services(settings: Settings) -> AsyncIterator[Services]:
    built = Services.build(settings)
    async with built.database.transaction() as session:
        await load_catalog(session, load_catalog_file(DEMO_CATALOG), built.clock.now())
    yield built
    await built.close()


@pytest.fixture(scope="session")
async def http(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://cover.test") as client:
        yield client


@dataclass
class Credential:
    api_key: str
    api_secret: str


@dataclass
class PartnerClient:
    """Signed calls to one partner's endpoints, in one mode."""

    http: httpx.AsyncClient
    code: str
    credential: Credential

    def path(self, relative: str) -> str:
        return f"/api/partners/{self.code}/{relative}"

    async def call(
        self,
        method: str,
        relative: str,
        json: Any = None,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        code: str | None = None,
    ) -> httpx.Response:
        path = f"/api/partners/{code or self.code}/{relative}"
        all_headers = signed_headers(
            self.credential.api_key, self.credential.api_secret, method, path
        )
        if idempotency_key:
            all_headers["x-idempotency-key"] = idempotency_key
        all_headers.update(headers or {})
        if json is not None and content is None:
            return await self.http.request(
                method, path, json=json, headers=all_headers, params=params
            )
        return await self.http.request(
            method, path, content=content, headers=all_headers, params=params
        )


@dataclass
class PartnerFixture:
    id: int
    code: str
    sandbox: PartnerClient
    live: PartnerClient


@pytest.fixture
async def partner(services: Services, http: httpx.AsyncClient) -> PartnerFixture:
    return await make_partner(services, http)


@pytest.fixture
async def other_partner(services: Services, http: httpx.AsyncClient) -> PartnerFixture:
    return await make_partner(services, http)


_codes = itertools.count(1)


def unique_code() -> str:
    """5 characters, unique within a test session (its database is fresh)."""
    number = next(_codes)
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    text = ""
    while number:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
    return "T" + text.rjust(4, "0")


async def make_partner(services: Services, http: httpx.AsyncClient) -> PartnerFixture:
    code = unique_code()
    async with services.database.transaction() as session:
        row, issued = await create_partner(
            session, services.box, name=f"Partner {code}", code=code, now=services.clock.now()
        )
    clients = {
        mode: PartnerClient(http, code, Credential(cred.api_key, cred.api_secret))
        for mode, cred in issued.items()
    }
    return PartnerFixture(row.id, code, clients["sandbox"], clients["live"])


# Rows no partner owns (the catalogue, FX rates), and the browser sessions of whoever views
# the dashboard (a page view records the partner and mode it shows).
UNOWNED_TABLES = {"fx_rates", "products", "product_versions", "dashboard_sessions"}


async def partner_state(
    services: Services, partner_id: int, mode: str | None = None
) -> dict[str, Any]:
    """Every row a partner owns (in one mode, when given), table by table, to assert that a
    refused request changed nothing. A table added later must be owned through one of these
    links or be listed in UNOWNED_TABLES, or this fails."""
    state: dict[str, list[dict[str, Any]]] = {}
    async with services.database.reading() as session:
        for table in metadata.sorted_tables:
            if table.name in UNOWNED_TABLES:
                continue
            columns = table.c
            if table.name == "partners":
                owned = columns.id == partner_id
            elif "partner_id" in columns:
                owned = columns.partner_id == partner_id
            elif "package_id" in columns:
                owned = columns.package_id.in_([r["id"] for r in state["quote_packages"]])
            elif "delivery_id" in columns:
                owned = columns.delivery_id.in_([r["id"] for r in state["webhook_deliveries"]])
            elif "delivery_public_id" in columns:
                owned = columns.delivery_public_id.in_(
                    [r["public_id"] for r in state["webhook_deliveries"]]
                )
            else:
                raise AssertionError(f"whose rows are in {table.name}? Link it or list it.")
            if mode is not None and "mode" in columns:
                owned = owned & (columns.mode == mode)
            result = await session.execute(
                select(table).where(owned).order_by(*table.primary_key.columns)
            )
            state[table.name] = [dict(row._mapping) for row in result]
    return state


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgresql` deploy on PostgreSQL whatever the backend: they belong to
    the PostgreSQL pass alone, so that a run on both backends does not repeat them. Tests
    marked `sqlite` are about SQLite's own machinery (its WAL, say): the SQLite pass alone."""
    other = "sqlite" if backend() == "postgresql" else "postgresql"
    deselected = [item for item in items if item.get_closest_marker(other)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker(other)]
