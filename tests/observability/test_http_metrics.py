"""/metrics of the API: request counters by route template, their exact values, and nothing a
partner would not want an exporter to show."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from coverline.app import create_app
from coverline.config import Settings
from coverline.runtime import Services
from tests.conftest import PartnerFixture
from tests.fixtures.metrics import Samples, key, scrape
from tests.fixtures.payloads import instant_booking_request

REQUESTS = "coverline_http_requests_total"
DURATION = "coverline_http_request_duration_seconds"
BOOKING = "/api/partners/{partner_code}/bookings/{package_id}/"


def requests_counted(after: Samples, before: Samples) -> dict[tuple[str, str, str], float]:
    return {
        (dict(labels)["method"], dict(labels)["route"], dict(labels)["status"]): change
        for (name, labels), change in after.minus(before).items()
        if name == REQUESTS
    }


async def test_requests_are_counted_by_route_template_and_status(
    http: httpx.AsyncClient, partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    before = await scrape(http)
    booked = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    assert booked.status_code == 200
    booking = booked.json()["id"]
    assert (await partner.sandbox.call("GET", f"bookings/{booking}/")).status_code == 200
    # The twin spelling without the trailing slash is the same route.
    assert (await partner.sandbox.call("GET", f"bookings/{booking}")).status_code == 200
    assert (await partner.sandbox.call("GET", "bookings/AAAAA-BBBBB-INS/")).status_code == 404
    other = await partner.sandbox.call("GET", "bookings/", code=other_partner.code)
    assert other.status_code == 404
    assert (await http.get(partner.sandbox.path("bookings/"))).status_code == 401
    assert (await http.get(f"/no/such/{booking}")).status_code == 404
    assert (await http.get("/dashboard/no/such/page")).status_code == 404
    assert (await http.request("PROPFIND", "/healthz")).status_code == 405
    after = await scrape(http)

    assert requests_counted(after, before) == {
        ("POST", "/api/partners/{partner_code}/instant_booking/", "200"): 1,
        ("GET", BOOKING, "200"): 2,
        ("GET", BOOKING, "404"): 1,
        ("GET", "/api/partners/{partner_code}/bookings/", "404"): 1,
        ("GET", "/api/partners/{partner_code}/bookings/", "401"): 1,
        ("GET", "<unmatched>", "404"): 1,
        ("GET", "/dashboard/{path}", "404"): 1,
        ("OTHER", "/healthz", "405"): 1,
        ("GET", "/metrics", "200"): 1,
    }
    durations = key(f"{DURATION}_count", method="GET", route=BOOKING)
    assert after.values[durations] - before.values.get(durations, 0.0) == 3
    infinite = key(f"{DURATION}_bucket", method="GET", route=BOOKING, le="+Inf")
    assert after.values[infinite] - before.values.get(infinite, 0.0) == 3


async def test_the_exposition_holds_no_partner_data(
    http: httpx.AsyncClient, partner: PartnerFixture
) -> None:
    booked = await partner.live.call("POST", "instant_booking/", instant_booking_request())
    assert booked.status_code == 200
    text = (await http.get("/metrics")).text
    for private in (
        partner.code,
        booked.json()["id"],
        partner.live.credential.api_key,
        partner.live.credential.api_secret,
        "mark.mcintosh@example.com",
    ):
        assert private not in text
    routes = {dict(labels).get("route") for labels in Samples.parse(text).labelled(REQUESTS)}
    assert all(route == "<unmatched>" or route.startswith("/") for route in routes)
    assert not [route for route in routes if "INS" in route or "/T0" in route]


async def test_openmetrics_is_served_when_asked_for(http: httpx.AsyncClient) -> None:
    response = await http.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


@pytest.fixture
async def without_metrics(
    settings: Settings, services: Services
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"metrics_enabled": False}), services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://cover.test") as client:
        yield client


async def test_metrics_can_be_turned_off(without_metrics: httpx.AsyncClient) -> None:
    response = await without_metrics.get("/metrics")
    assert response.status_code == 404
    assert response.json() == {"type": "not_found", "message": "Not found.", "errors": {}}
