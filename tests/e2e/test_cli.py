"""The `coverline` command line against a real server and its database."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from coverline.db.engine import normalise_url
from tests.fixtures.server import (
    DEMO_CATALOG,
    CoverlineServer,
    running_server,
    shared_database,
)
from tests.fixtures.signing import signed_headers

pytestmark = pytest.mark.slow

PRODUCTS = ("event_ticket_protection", "travel_medical", "parcel_protection", "gadget_cover")
LOADED_LINE = re.compile(
    r"^(?P<policy_type>[a-z_]+) v1: revision (?P<revision>\d+) "
    r"\((?P<version>[0-9a-f-]{36})\) (?P<state>new version|unchanged)$"
)
CATALOG_CACHE_SECONDS = 5.0  # `Catalog` re-reads the current versions after this long


def loaded_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    matches = [LOADED_LINE.match(line) for line in lines]
    assert all(matches), result.stdout
    return [match.groupdict() for match in matches if match]


async def query(server: CoverlineServer, sql: str) -> list[tuple[Any, ...]]:
    engine = create_async_engine(normalise_url(server.database_url))
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]
    finally:
        await engine.dispose()


async def table_counts(server: CoverlineServer) -> dict[str, int]:
    counts = {}
    for table in ("partners", "api_credentials", "products", "product_versions", "fx_rates"):
        counts[table] = (await query(server, f"SELECT count(*) FROM {table}"))[0][0]
    return counts


def signed_get(
    server: CoverlineServer, code: str, credential: dict[str, str], relative: str
) -> httpx.Response:
    path = f"/api/partners/{code}/{relative}"
    headers = signed_headers(credential["api_key"], credential["api_secret"], "GET", path)
    return httpx.get(server.base_url + path, headers=headers, timeout=30.0)


def bearer(credential: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential['api_secret']}"}


def ticket_quote(ticket_price: int = 100) -> dict[str, Any]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    return {
        "request": [
            {
                "policy_type": "event_ticket_protection",
                "policy_type_version": 1,
                "policy_start_date": start.isoformat(),
                "event_datetime": (start + timedelta(days=10)).isoformat(),
                "event_name": "Ariana Grande",
                "event_location": "The O2",
                "number_of_tickets": 2,
                "tickets": [{"price": ticket_price}],
                "resale_ticket": False,
                "event_country": "GB",
            }
        ],
        "currency": "GBP",
        "customer_country": "GB",
        "customer_language": "en",
    }


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[CoverlineServer]:
    with running_server(tmp_path_factory.mktemp("cli"), request=request) as started:
        yield started


@pytest.fixture(scope="module")
def created(server: CoverlineServer) -> subprocess.CompletedProcess[str]:
    return server.run_cli(
        ["partner", "create", "--name", "Acme Tickets", "--code", "ABCDE", "--json"]
    )


@pytest.fixture(scope="module")
def partner(created: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert created.returncode == 0, created.stderr
    parsed: dict[str, Any] = json.loads(created.stdout)
    return parsed


@pytest.fixture(scope="module")
def first_load(server: CoverlineServer) -> subprocess.CompletedProcess[str]:
    return server.run_cli(["catalog", "load", str(DEMO_CATALOG)])


# ---------------------------------------------------------------- partners


def test_partner_create_prints_the_documented_json(
    server: CoverlineServer, created: subprocess.CompletedProcess[str], partner: dict[str, Any]
) -> None:
    assert created.returncode == 0
    assert created.stdout.count("\n") == 1  # one line of JSON and nothing else
    assert set(partner) == {"code", "sandbox", "live"}
    assert partner["code"] == "ABCDE"
    for mode in ("sandbox", "live"):
        assert set(partner[mode]) == {"api_key", "api_secret"}
        assert partner[mode]["api_key"].startswith(f"pk_{mode}_")
        assert partner[mode]["api_secret"].startswith(f"sk_{mode}_")
    assert partner["sandbox"]["api_key"] != partner["live"]["api_key"]

    for mode in ("sandbox", "live"):
        response = signed_get(server, "ABCDE", partner[mode], "bookings/")
        assert response.status_code == 200, response.text
        assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}
    mixed = {"api_key": partner["sandbox"]["api_key"], "api_secret": partner["live"]["api_secret"]}
    assert signed_get(server, "ABCDE", mixed, "bookings/").status_code == 401


async def test_duplicate_partner_code_fails_and_creates_nothing(
    server: CoverlineServer, partner: dict[str, Any]
) -> None:
    before = await table_counts(server)
    result = await server.arun_cli(
        ["partner", "create", "--name", "Someone else", "--code", "ABCDE", "--json"]
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "A partner with code ABCDE exists already."
    assert await table_counts(server) == before
    assert await query(server, "SELECT name FROM partners WHERE code = 'ABCDE'") == [
        ("Acme Tickets",)
    ]
    response = await asyncio.to_thread(signed_get, server, "ABCDE", partner["sandbox"], "bookings/")
    assert response.status_code == 200


# ---------------------------------------------------------------- catalogue


def test_catalog_load_twice_is_unchanged_the_second_time(
    server: CoverlineServer, first_load: subprocess.CompletedProcess[str]
) -> None:
    first = loaded_lines(first_load)
    assert [(line["policy_type"], line["revision"], line["state"]) for line in first] == [
        (policy_type, "1", "new version") for policy_type in PRODUCTS
    ]
    second = loaded_lines(server.run_cli(["catalog", "load", str(DEMO_CATALOG)]))
    assert second == [{**line, "state": "unchanged"} for line in first]


def changed_event_product(tmp: Path) -> Path:
    """The demo ticket product with twice the rate and minimum premium, as a JSON catalogue."""
    document = yaml.safe_load(DEMO_CATALOG.read_text())
    product = next(p for p in document["products"] if p["policy_type"] == PRODUCTS[0])
    kinds = {rule["kind"]: rule for rule in product["pricing"]}
    kinds["percentage"]["rate"] = 0.9
    kinds["minimum_premium"]["amount"] = 1.58
    path = tmp / "event-ticket-v1-rev2.json"
    path.write_text(json.dumps({"fx": document["fx"], "products": [product]}, indent=2))
    return path


async def test_changed_product_gets_revision_2_and_old_bookings_keep_their_version(
    server: CoverlineServer,
    partner: dict[str, Any],
    first_load: subprocess.CompletedProcess[str],
    tmp_path: Path,
) -> None:
    old_version = loaded_lines(first_load)[0]["version"]
    base = server.partner_url("ABCDE")
    async with httpx.AsyncClient(timeout=30.0, headers=bearer(partner["sandbox"])) as http:
        quote = await http.post(base + "quotes/", json=ticket_quote())
        assert quote.status_code == 201, quote.text
        old_quote = quote.json()["quotes"]["0"]
        assert old_quote["policy"]["policy_version"] == old_version
        holder = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com"}
        booked = await http.post(
            f"{base}bookings/{quote.json()['id']}/",
            json={"quotes": [{"id": old_quote["id"]}], "policyholder": holder},
        )
        assert booked.status_code == 200, booked.text
        booking_id = booked.json()["id"]
        before = await http.get(f"{base}bookings/{booking_id}/")
        assert before.status_code == 200

        result = await server.arun_cli(["catalog", "load", str(changed_event_product(tmp_path))])
        [line] = loaded_lines(result)
        assert (line["policy_type"], line["revision"], line["state"]) == (
            PRODUCTS[0],
            "2",
            "new version",
        )
        new_version = line["version"]
        assert new_version != old_version

        after = await http.get(f"{base}bookings/{booking_id}/")
        assert after.status_code == 200
        assert after.json() == before.json()
        assert [q["price"] for q in after.json()["quotes"]] == [old_quote["price"]]
        assert after.json()["quotes"][0]["policy"]["policy_version"] == old_version

        deadline = time.monotonic() + CATALOG_CACHE_SECONDS + 10
        while True:
            fresh = await http.post(base + "quotes/", json=ticket_quote())
            assert fresh.status_code == 201, fresh.text
            new_quote = fresh.json()["quotes"]["0"]
            if new_quote["policy"]["policy_version"] != old_version or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert new_quote["policy"]["policy_version"] == new_version
        old_premium = Decimal(str(old_quote["tax"]["total_amount_without_tax"]))
        new_premium = Decimal(str(new_quote["tax"]["total_amount_without_tax"]))
        assert new_premium > old_premium

    versions = await query(
        server,
        "SELECT v.revision FROM product_versions v JOIN products p ON p.id = v.product_id "
        f"WHERE p.policy_type = '{PRODUCTS[0]}' ORDER BY v.revision",
    )
    assert versions == [(1,), (2,)]


async def test_invalid_catalog_fails_with_the_problem_named(
    server: CoverlineServer, first_load: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    assert first_load.returncode == 0
    document = yaml.safe_load(DEMO_CATALOG.read_text())
    document["products"][1]["currencies"] = ["GBP", "XXQ"]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(document))
    before = await table_counts(server)

    result = await server.arun_cli(["catalog", "load", str(path)])
    assert result.returncode == 1
    assert result.stdout == ""
    message = result.stderr.strip()
    assert str(path) in message
    assert "products[1] (travel_medical).currencies" in message
    assert "'XXQ' is not an ISO 4217 currency code" in message
    assert await table_counts(server) == before


# ---------------------------------------------------------------- migrations


async def test_migrate_twice(server: CoverlineServer) -> None:
    revision = await query(server, "SELECT version_num FROM alembic_version")
    assert len(revision) == 1
    for _ in range(2):
        result = await server.arun_cli(["migrate"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == (
            f"Database at {server.env['COVERLINE_DATABASE_URL']} is up to date."
        )
    assert await query(server, "SELECT version_num FROM alembic_version") == revision
    health = await asyncio.to_thread(httpx.get, server.base_url + "/healthz", timeout=10.0)
    assert health.status_code == 200


# ---------------------------------------------------------------- serve --demo


def demo_credentials(stdout: str) -> dict[str, Any]:
    assert stdout.startswith("Demo partner ready:\n"), stdout
    start = stdout.index("{")
    credentials, _ = json.JSONDecoder().raw_decode(stdout, start)
    assert isinstance(credentials, dict)
    return credentials


def test_serve_demo_prints_the_same_credentials_on_every_start(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    master_key = Fernet.generate_key().decode()
    seen = []
    with shared_database(tmp_path) as database_url:
        for _ in range(2):
            with running_server(
                tmp_path,
                args=["--demo"],
                database_url=database_url,
                data_dir=tmp_path / "data",
                master_key=master_key,
                request=request,
            ) as demo:
                credentials = demo_credentials(demo.stdout())
                assert f"{demo.base_url}/api/docs" in demo.stdout()
                response = signed_get(demo, "DEMO1", credentials["sandbox"], "bookings/")
                assert response.status_code == 200, response.text
                quote = httpx.post(
                    demo.partner_url("DEMO1", "quotes/"),
                    json=ticket_quote(),
                    headers=bearer(credentials["live"]),
                    timeout=30.0,
                )
                assert quote.status_code == 201, quote.text
            seen.append(credentials)
    first, second = seen
    assert set(first) == {"code", "sandbox", "live"}
    assert first["code"] == "DEMO1"
    for mode in ("sandbox", "live"):
        assert set(first[mode]) == {"api_key", "api_secret"}
        assert first[mode]["api_key"].startswith(f"pk_{mode}_")
        assert first[mode]["api_secret"].startswith(f"sk_{mode}_")
    assert second == first


# ---------------------------------------------------------------- what the environment gets wrong


def test_a_wrong_setting_or_database_is_one_clear_line(
    server: CoverlineServer, tmp_path: Path
) -> None:
    """A mistake in the environment (a setting, a database out of reach) is named in one line
    on standard error, with exit status 1: no traceback."""
    cases = [
        (
            {"COVERLINE_DATABASE_URL": "mysql://root@127.0.0.1/x"},
            "COVERLINE_DATABASE_URL: use sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE",
        ),
        ({"COVERLINE_RATE_LIMIT": "bogus"}, "COVERLINE_RATE_LIMIT: couldn't parse rate limit"),
        ({"COVERLINE_MASTER_KEY": "garbage"}, "COVERLINE_MASTER_KEY: each key must be 32"),
        ({"COVERLINE_LOG_LEVEL": "verbose"}, "COVERLINE_LOG_LEVEL: Input should be"),
        ({"COVERLINE_REDIS_URL": "http://127.0.0.1:1"}, "COVERLINE_REDIS_URL: use redis://"),
        (
            {"COVERLINE_IDEMPOTENCY_TTL_HOURS": "-1"},
            "COVERLINE_IDEMPOTENCY_TTL_HOURS: Input should be greater than or equal to 1",
        ),
        (
            {"COVERLINE_WEBHOOK_POLL_SECONDS": "0"},
            "COVERLINE_WEBHOOK_POLL_SECONDS: Input should be greater than 0",
        ),
        (
            {"COVERLINE_MESSAGE_EXPIRY_HOURS": "inf"},
            "COVERLINE_MESSAGE_EXPIRY_HOURS: Input should be a finite number",
        ),
        (
            {"COVERLINE_WEBHOOK_ATTEMPT_RETENTION_DAYS": "-30"},
            "COVERLINE_WEBHOOK_ATTEMPT_RETENTION_DAYS: Input should be greater than or equal to 1",
        ),
        (
            {"COVERLINE_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"},
            "Cannot use the database at postgresql://postgres@127.0.0.1:1/x:",
        ),
    ]
    for env, expected in cases:
        for args in (["migrate"], ["partner", "create", "--name", "X", "--json"]):
            result = server.run_cli(args, env=env)
            assert result.returncode == 1, (env, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr, result.stderr
            assert result.stderr.strip().startswith(f"coverline: {expected}"), result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # A data directory that does not exist yet is made.
    fresh = tmp_path / "new" / "data"
    made = server.run_cli(
        ["migrate"], env={"COVERLINE_DATA_DIR": str(fresh), "COVERLINE_DATABASE_URL": None}
    )
    assert made.returncode == 0, made.stderr
    assert (fresh / "coverline.db").exists()


async def test_arguments_that_are_no_text_are_refused_as_such(server: CoverlineServer) -> None:
    """An argument in no UTF-8, or with a NUL, is named in one line (it was blamed on the
    database); a code that is ASCII only once upper-cased, and an operator with a partner,
    are refused; nothing is created."""
    before = await table_counts(server)
    for args in (
        ["partner", "create", "--name", "bad\udcffname", "--json"],
        ["partner", "rotate-key", "--code", "\udcff"],
        ["user", "create", "--email", "a@example.com", "--partner", "\udcff"],
    ):
        result = await server.arun_cli(args)
        assert result.returncode == 1, result.stdout
        assert "Traceback" not in result.stderr and "database" not in result.stderr
        assert result.stderr.strip().startswith("coverline: the argument "), result.stderr
        assert result.stderr.strip().endswith("is not UTF-8 text without NUL."), result.stderr
    ligature = await server.arun_cli(["partner", "create", "--name", "X", "--code", "ﬃ12"])
    assert ligature.returncode == 1
    assert '{"code": ["A partner code is 5 upper-case letters or digits."]}' in ligature.stderr
    both = await server.arun_cli(
        ["user", "create", "--email", "b@example.com", "--operator", "--partner", "ABCDE"]
    )
    assert both.returncode == 1
    assert "an operator (--operator) or a partner's (--partner), not both" in both.stderr
    assert await table_counts(server) == before


async def test_partner_codes_and_names_are_checked_whole(server: CoverlineServer) -> None:
    before = await table_counts(server)
    for args, message in (
        (["--code", "NLINE\n"], '{"code": ["A partner code is 5 upper-case letters or digits."]}'),
        (["--name", "n" * 201], '{"name": ["At most 200 characters."]}'),
    ):
        name = [] if "--name" in args else ["--name", "Checked"]
        result = await server.arun_cli(["partner", "create", *name, *args, "--json"])
        assert result.returncode == 1, result.stdout
        assert message in result.stderr
    assert await table_counts(server) == before


async def test_serve_demo_issues_a_key_for_a_mode_left_without_one(tmp_path: Path) -> None:
    """`serve --demo` prints working sandbox and live credentials also when every key of a
    mode of the demo partner was revoked since."""
    from coverline.cli import _demo
    from coverline.config import Settings
    from coverline.db.migrate import upgrade
    from coverline.partners.models import Partner
    from coverline.partners.service import revoke_credential
    from coverline.runtime import Services

    settings = Settings(data_dir=tmp_path, run_worker=False)
    await upgrade(settings.resolved_database_url)
    first = await _demo(settings)
    services = Services.build(settings)
    try:
        async with services.database.transaction() as session:
            partner = (await session.scalars(select(Partner))).one()
            await revoke_credential(
                session, partner, first["sandbox"]["api_key"], services.clock.now()
            )
    finally:
        await services.close()
    second = await _demo(settings)
    assert set(second) == {"code", "sandbox", "live"}
    assert second["live"] == first["live"]
    assert second["sandbox"]["api_key"] != first["sandbox"]["api_key"]
    assert second["sandbox"]["api_key"].startswith("pk_sandbox_")
    assert await _demo(settings) == second
