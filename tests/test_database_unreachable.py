"""A database out of reach is a 503 with the error body, never a 500; a bad statement stays a
bug (500). The app here is configured with a PostgreSQL server that refuses connections."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from coverline.app import create_app
from coverline.config import Settings
from coverline.db.engine import database_unreachable
from coverline.runtime import Services
from tests.conftest import MASTER_KEY
from tests.fixtures.server import free_port


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        (ConnectionRefusedError(111, "Connect call failed"), True),
        (OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432)"), True),
        (OSError(113, "No route to host"), True),
        (FileNotFoundError(2, "No such file or directory"), False),  # a bug, not an outage
        (DBAPIError("SELECT 1", {}, DriverError("57P03")), True),  # starting up
        (DBAPIError("SELECT 1", {}, DriverError("57P01")), True),  # administrator shutdown
        (DBAPIError("SELECT 1", {}, DriverError("08006")), True),  # connection failure
        (DBAPIError("SELECT 1", {}, DriverError("XX000"), connection_invalidated=True), True),
        (DBAPIError("SELECT 1", {}, DriverError("42P01")), False),  # undefined table: a bug
        (IntegrityError("INSERT", {}, DriverError("23505")), False),
        (ValueError("not a database error"), False),
    ],
)
def test_which_errors_mean_the_database_is_out_of_reach(
    error: BaseException, unreachable: bool
) -> None:
    assert database_unreachable(error) is unreachable


@pytest.fixture
async def unreachable(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    # A port nobody listens on: every connection is refused at once.
    settings = Settings(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/coverline",
        data_dir=tmp_path,
        master_key=MASTER_KEY,
        run_worker=False,
    )
    services = Services.build(settings)
    transport = httpx.ASGITransport(app=create_app(settings, services))
    async with httpx.AsyncClient(transport=transport, base_url="https://cover.test") as http:
        yield http
    await services.close()


async def test_a_partner_request_answers_503_with_the_error_body(
    unreachable: httpx.AsyncClient,
) -> None:
    response = await unreachable.get(
        "/api/partners/ABCDE/bookings/", headers={"Authorization": "Bearer sk_sandbox_x"}
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {
        "type": "service_unavailable",
        "message": "The service is briefly unavailable; retry the request.",
        "errors": {},
    }
    assert response.headers["X-Request-Id"]


async def test_readyz_answers_503_and_healthz_200(unreachable: httpx.AsyncClient) -> None:
    ready = await unreachable.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "database": "ConnectionRefusedError"}
    assert (await unreachable.get("/healthz")).json() == {"status": "ok"}
