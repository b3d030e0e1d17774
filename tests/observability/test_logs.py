"""Log lines: JSON with the request id of the request they belong to, the access line's
fields, the id a client may send, and a 500 that still names its request."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from coverline.app import create_app
from coverline.cli import display_url
from coverline.config import Settings
from coverline.kit.request_id import bound_request_id
from coverline.observability.logs import JsonFormatter, TextFormatter, logging_config
from coverline.runtime import Services
from tests.conftest import PartnerFixture
from tests.fixtures.metrics import key, scrape


class Lines:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def of(self, logger: str) -> list[dict[str, Any]]:
        return [line for line in self.all() if line["logger"] == logger]


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    lines = Lines()
    handler = logging.StreamHandler(lines.stream)
    handler.setFormatter(JsonFormatter())
    coverline = logging.getLogger("coverline")
    level = coverline.level
    coverline.addHandler(handler)
    coverline.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        coverline.removeHandler(handler)
        coverline.setLevel(level)


async def test_the_access_line_has_the_request_id_of_the_response(
    http: httpx.AsyncClient, partner: PartnerFixture, json_lines: Lines
) -> None:
    response = await partner.sandbox.call(
        "GET", "bookings/", params={"email": "mark.mcintosh@example.com"}
    )
    assert response.status_code == 200
    (line,) = json_lines.of("coverline.access")
    assert isinstance(line.pop("ts"), str) and isinstance(line.pop("pid"), int)
    duration = line.pop("duration_ms")
    assert isinstance(duration, float) and duration >= 0
    path = f"/api/partners/{partner.code}/bookings/"
    assert line == {
        "level": "info",
        "logger": "coverline.access",
        "message": f"GET {path} 200 {duration:.1f} ms",
        "request_id": response.headers["x-request-id"],
        "method": "GET",
        "path": path,
        "route": "/api/partners/{partner_code}/bookings/",
        "status": 200,
        "partner": partner.code,
        "mode": "sandbox",
    }


async def test_an_unauthenticated_request_is_logged_without_a_partner(
    http: httpx.AsyncClient, json_lines: Lines
) -> None:
    response = await http.get("/api/partners/ABCDE/bookings/%0Aforged")
    assert response.status_code == 401
    (line,) = json_lines.of("coverline.access")
    assert line["partner"] is None and line["mode"] is None
    # Percent-escapes are kept: a decoded newline would forge a second text line.
    assert line["path"] == "/api/partners/ABCDE/bookings/%0Aforged"
    assert line["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    "sent",
    ["abc", "0b6f2c1e-6d1a-4c1e-9f6a-1e2d3c4b5a69", "00-4bf92f35-01", "a.b_c:d", "x" * 64],
)
async def test_a_sane_request_id_from_the_client_is_kept(
    http: httpx.AsyncClient, json_lines: Lines, sent: str
) -> None:
    response = await http.get("/healthz", headers={"X-Request-Id": sent})
    assert response.headers["x-request-id"] == sent
    assert json_lines.of("coverline.access")[0]["request_id"] == sent


@pytest.mark.parametrize(
    "sent", ["x" * 65, "has space", "semi;colon", 'quote"d', "é", "tab\tbed", "", "a/b"]
)
async def test_any_other_request_id_is_replaced(
    http: httpx.AsyncClient, json_lines: Lines, sent: str
) -> None:
    response = await http.get("/healthz", headers={"X-Request-Id": sent.encode("utf-8")})
    generated = response.headers["x-request-id"]
    assert generated != sent
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert json_lines.of("coverline.access")[0]["request_id"] == generated


@pytest.fixture
async def failing_app(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, services)

    async def broken() -> None:
        logging.getLogger("coverline.tests").info("about to fail")
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken, include_in_schema=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://cover.test") as client:
        yield client


async def test_a_500_names_its_request_in_the_header_and_every_line(
    failing_app: httpx.AsyncClient, json_lines: Lines
) -> None:
    before = await scrape(failing_app)
    response = await failing_app.get("/broken", headers={"X-Request-Id": "support-case-12"})
    after = await scrape(failing_app)
    assert response.status_code == 500
    assert response.json() == {
        "type": "api_error",
        "message": "An internal error occurred.",
        "errors": {},
    }
    assert response.headers["x-request-id"] == "support-case-12"
    lines = [line for line in json_lines.all() if line.get("route") != "/metrics"]
    assert [(line["logger"], line["request_id"]) for line in lines] == [
        ("coverline.tests", "support-case-12"),
        ("coverline.access", "support-case-12"),
        ("coverline", "support-case-12"),
    ]
    assert lines[1]["status"] == 500
    assert lines[2]["message"] == "unhandled error"
    assert "RuntimeError: a bug" in lines[2]["exc_info"]
    counted = key("coverline_http_requests_total", method="GET", route="/broken", status="500")
    assert after.values[counted] - before.values.get(counted, 0.0) == 1


def test_a_json_line_carries_the_extra_fields_and_the_context_id() -> None:
    record = logging.LogRecord(
        "coverline.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None
    )
    record.__dict__.update(delivery="wd_1", attempts=3, when=object)
    with bound_request_id("job_0123456789abcdef"):
        line = json.loads(JsonFormatter().format(record))
    assert line.pop("ts").endswith("Z")
    assert line == {
        "level": "warning",
        "logger": "coverline.x",
        "message": "hello you",
        "pid": record.process,
        "request_id": "job_0123456789abcdef",
        "delivery": "wd_1",
        "attempts": 3,
        "when": str(object),
    }
    text = TextFormatter().format(record)
    assert text.endswith(" WARNING coverline.x: hello you")


def test_debug_is_for_coverline_only() -> None:
    config = logging_config("debug", "json")
    loggers = config["loggers"]
    assert loggers["coverline"]["level"] == logging.DEBUG
    assert config["root"]["level"] == logging.INFO
    for quiet in ("sqlalchemy", "asyncpg", "python_multipart", "multipart"):
        assert loggers[quiet]["level"] == logging.WARNING
    assert config["handlers"]["stderr"]["level"] == logging.DEBUG
    assert config["formatters"]["coverline"]["()"] == "coverline.observability.logs.JsonFormatter"
    text = logging_config("info", "text")
    assert text["formatters"]["coverline"]["()"] == "coverline.observability.logs.TextFormatter"
    assert text["loggers"]["coverline"]["level"] == logging.INFO


def test_printed_database_urls_hide_the_password() -> None:
    shown = display_url("postgresql://coverline:s3cr3t-pw@db.internal:5432/coverline")
    assert shown == "postgresql://coverline:***@db.internal:5432/coverline"


async def test_a_database_error_quotes_no_parameter(services: Services) -> None:
    private = "olaoluwa.private@example.ng"
    with pytest.raises(DBAPIError) as raised:
        async with services.database.transaction() as session:
            await session.execute(
                text("INSERT INTO no_such_table (email) VALUES (:email)"), {"email": private}
            )
    assert private not in str(raised.value)
    assert "hidden due to hide_parameters=True" in str(raised.value)


def test_the_log_level_is_read_in_any_case_and_checked() -> None:
    assert Settings(log_level="WARNING").log_level == "warning"
    with pytest.raises(ValidationError) as raised:
        Settings(log_level="loud")
    assert raised.value.errors()[0]["loc"] == ("log_level",)
