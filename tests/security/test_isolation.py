"""Tenant isolation: every partner API route and every dashboard page, called by another
partner (with its own path and with the victim's) and by the victim itself in the other mode
(live credentials on sandbox resources). Each answers 404, or acts on the caller's own data
only; no answer carries the victim's data; the victim's rows stay as they were.

The routes come from the application itself, so a route added later without a line in these
tables fails `test_every_route_is_in_a_matrix`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount

from coverline.app import create_app
from coverline.config import Settings
from coverline.runtime import Services
from tests.conftest import PartnerClient, PartnerFixture, make_partner, partner_state
from tests.dashboard.helpers import Browser, add_user, browser_for
from tests.fixtures.payloads import (
    instant_booking_request,
    policyholder,
    quote_request,
    ticket_item,
)
from tests.security.tenants import (
    EMAIL,
    HOOK_PATH,
    SENDER_MARK,
    SURNAME,
    TEMPLATE_MARK,
    Victim,
    build_victim,
    fill,
)

API = "/api/partners/{partner_code}/"


@pytest.fixture(scope="module")
async def victim(services: Services, http: httpx.AsyncClient) -> Victim:
    return await build_victim(services, http)


@pytest.fixture(scope="module")
async def other(services: Services, http: httpx.AsyncClient) -> PartnerFixture:
    return await make_partner(services, http)


# ------------------------------------------------------------------------------ the API


@dataclass(frozen=True)
class Call:
    """One route: the call made, and what the intruders get when the route acts on the
    caller's own data (None: it names one of the victim's resources, so 404)."""

    path: str
    body: Any = None
    params: dict[str, str] | None = None
    foreign: int | None = None
    other_mode: int | None = None


PAID = {"instalment_number": 1, "payment_status": "PAID"}
API_MATRIX: dict[tuple[str, str], Call] = {
    ("POST", "quotes"): Call("quotes/", quote_request(), foreign=201, other_mode=201),
    ("GET", "quotes/{package_id}"): Call("quotes/{package}/"),
    ("PATCH", "quotes/{package_id}"): Call("quotes/{package}/", {"currency": "USD"}),
    ("POST", "quotes/{package_id}/add"): Call(
        "quotes/{package}/add/", {"request": [ticket_item()]}
    ),
    ("POST", "quotes/{package_id}/delete"): Call(
        "quotes/{package}/delete/", {"quotes": [{"id": "{quote}"}]}
    ),
    ("POST", "bookings/{package_id}/opt_out"): Call("bookings/{package}/opt_out", {}),
    ("POST", "instant_booking"): Call(
        "instant_booking/", instant_booking_request(), foreign=200, other_mode=200
    ),
    ("GET", "bookings"): Call("bookings/", foreign=200, other_mode=200),
    ("POST", "bookings/{package_id}"): Call(
        "bookings/{package}/", {"quotes": [{"id": "{quote}"}], "policyholder": policyholder()}
    ),
    ("GET", "bookings/{package_id}"): Call("bookings/{booking}/"),
    ("PATCH", "bookings/{package_id}"): Call(
        "bookings/{booking}/", {"policyholder": {"phone": "+447911123456"}}
    ),
    ("PUT", "bookings/{package_id}/confirm"): Call("bookings/{pending}/confirm", {}),
    ("PATCH", "bookings/{package_id}/quote_for_update"): Call(
        "bookings/{updatable}/quote_for_update",
        {"quotes": [{"id": "{updatable_quote}", "update_fields": {"tickets": [{"price": 70}]}}]},
    ),
    ("POST", "bookings/{package_id}/confirm_update/{update_id}"): Call(
        "bookings/{updatable}/confirm_update/{update}/", {}
    ),
    ("POST", "bookings/{package_id}/cancel"): Call("bookings/{cancellable}/cancel", {}),
    ("POST", "bookings/{package_id}/confirm_cancellation/{cancellation_id}"): Call(
        "bookings/{cancellable}/confirm_cancellation/{cancellation}/", {}
    ),
    ("GET", "bookings/{package_id}/instalments"): Call("bookings/{booking}/instalments/"),
    ("POST", "bookings/{package_id}/instalments"): Call(
        "bookings/{booking}/instalments/",
        {
            "quotes": [
                {"id": "{booked_quote}", **PAID, "payment_attempted_date": "2030-01-01T00:00:00Z"}
            ]
        },
    ),
    ("GET", "api_keys"): Call("api_keys/", foreign=200, other_mode=200),
    ("POST", "api_keys"): Call("api_keys/", {}, foreign=201, other_mode=201),
    ("DELETE", "api_keys/{api_key}"): Call("api_keys/{api_key}/"),
    ("GET", "webhooks"): Call("webhooks/", foreign=200, other_mode=200),
    ("POST", "webhooks"): Call(
        "webhooks/",
        {"url": "http://127.0.0.1:9/intruder", "enabled": False},
        foreign=201,
        other_mode=201,
    ),
    ("GET", "webhooks/{endpoint_id}"): Call("webhooks/{endpoint}/"),
    ("GET", "webhooks/{endpoint_id}/secret"): Call("webhooks/{endpoint}/secret"),
    ("PATCH", "webhooks/{endpoint_id}"): Call(
        "webhooks/{endpoint}/", {"url": "http://127.0.0.1:9/stolen"}
    ),
    ("DELETE", "webhooks/{endpoint_id}"): Call("webhooks/{endpoint}/"),
    ("POST", "webhooks/{endpoint_id}/rotate_secret"): Call("webhooks/{endpoint}/rotate_secret"),
    ("POST", "webhooks/{endpoint_id}/test"): Call("webhooks/{endpoint}/test"),
    ("GET", "webhooks/{endpoint_id}/deliveries"): Call("webhooks/{endpoint}/deliveries/"),
    ("GET", "webhooks/{endpoint_id}/deliveries/{delivery_id}"): Call(
        "webhooks/{endpoint}/deliveries/{delivery}/"
    ),
    ("POST", "webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"): Call(
        "webhooks/{endpoint}/deliveries/{delivery}/redeliver"
    ),
    ("POST", "webhooks/{endpoint_id}/recover"): Call(
        "webhooks/{endpoint}/recover", {"since": "2000-01-01T00:00:00Z"}
    ),
    ("GET", "messaging/settings"): Call("messaging/settings", foreign=200, other_mode=200),
    ("PUT", "messaging/settings"): Call("messaging/settings", {}, foreign=200, other_mode=200),
    ("PATCH", "messaging/settings"): Call(
        "messaging/settings", {"sender_name": "Intruder"}, foreign=200, other_mode=200
    ),
    ("GET", "messaging/templates"): Call("messaging/templates/", foreign=200, other_mode=200),
    ("PUT", "messaging/templates/{event}/{channel}/{language}"): Call(
        "messaging/templates/purchase/email/en",
        {"subject": "Intruder", "text": "Intruder"},
        foreign=200,
        other_mode=200,
    ),
    # The intruders never write this one, the victim does.
    ("DELETE", "messaging/templates/{event}/{channel}/{language}"): Call(
        "messaging/templates/purchase/sms/en", foreign=404, other_mode=404
    ),
    ("POST", "messaging/templates/{event}/{channel}/{language}/preview"): Call(
        "messaging/templates/purchase/email/en/preview",
        {"booking": "{booking}"},
        foreign=404,
        other_mode=404,
    ),
    ("GET", "messages"): Call(
        "messages/", params={"booking": "{booking}"}, foreign=200, other_mode=200
    ),
    ("GET", "messages/{message_id}"): Call("messages/{message}/"),
    ("POST", "bookings/{package_id}/send_email"): Call("bookings/{booking}/send_email", {}),
    ("PATCH", "renewals/{package_id}/quote_for_renewal"): Call(
        "renewals/{renewable}/quote_for_renewal/", {}
    ),
    ("POST", "renewals/{package_id}/confirm/{renewal_id}"): Call(
        "renewals/{renewable}/confirm/{renewal}/", {}
    ),
    ("POST", "renewals/{package_id}/opt_out"): Call("renewals/{renewable}/opt_out/", {}),
    # Live has no test clock: 404, as documented.
    ("GET", "sandbox/clock"): Call("sandbox/clock", foreign=200, other_mode=404),
    ("POST", "sandbox/clock"): Call(
        "sandbox/clock", {"advance": "PT1M"}, foreign=200, other_mode=404
    ),
}
# Routes outside the partner tree, and why no tenant's data is behind them.
SHARED_ROUTES = {
    ("GET", "/api/openapi.json"): "the API's description",
    ("GET", "/api/docs"): "the API's documentation page",
    ("GET", "/dashboard"): "a redirect to /dashboard/, the dashboard's own routes below",
    ("GET", "/healthz"): "the process answers",
    ("GET", "/readyz"): "the database answers",
    ("GET", "/metrics"): "counts by route template and backlog sizes, never a tenant's data",
    ("GET", "/api/auxiliary/countries"): "reference data, the same for every partner",
    ("GET", "/api/auxiliary/countries/{code}"): "reference data",
    ("GET", "/api/auxiliary/countries/{code}/regions"): "reference data",
    ("GET", "/api/auxiliary/currencies"): "reference data",
    ("GET", "/api/auxiliary/languages"): "reference data",
    ("GET", "/pds/{package_id}"): "the product disclosure: no personal data (tested below)",
    ("GET", "/coi/{package_id}"): "the certificate, behind the booking's token (tested below)",
}
MOUNTS = {
    "/static": "the dashboard's and the docs' assets",
    "/dashboard": "its routes: DASHBOARD_MATRIX, DASHBOARD_OWN and OPERATOR_PAGES below",
}
INTRUDERS = ["other partner, own path", "other partner, victim's path", "same partner, live"]


def _routes(routes: Any) -> set[tuple[str, str]]:
    found = set()
    for route in iter_route_contexts(routes):
        for method in (route.methods or set()) - {"HEAD"}:
            found.add((method, str(route.path).rstrip("/") or "/"))
    return found


def _mounts(routes: Any) -> dict[str, Any]:
    return {
        str(route.path): route.original_route.app
        for route in iter_route_contexts(routes)
        if isinstance(route.original_route, Mount)
    }


async def test_every_route_is_in_a_matrix(settings: Settings, services: Services) -> None:
    app = create_app(settings, services)
    partner_routes = {
        (method, path.removeprefix(API.rstrip("/") + "/"))
        for method, path in _routes(app.routes)
        if path.startswith(API.rstrip("/"))
    }
    others = {route for route in _routes(app.routes) if not route[1].startswith(API.rstrip("/"))}
    assert partner_routes == set(API_MATRIX)
    assert others == set(SHARED_ROUTES)
    mounts = _mounts(app.routes)
    assert set(mounts) == set(MOUNTS)
    dashboard_routes = _routes(mounts["/dashboard"].routes)
    assert dashboard_routes == set(DASHBOARD_MATRIX) | set(DASHBOARD_OWN) | set(OPERATOR_PAGES)


def _caller(
    intruder: str, victim: Victim, other: PartnerFixture
) -> tuple[PartnerClient, str | None]:
    if intruder == "same partner, live":
        return victim.partner.live, None
    if intruder == "other partner, victim's path":
        return other.sandbox, victim.partner.code
    return other.sandbox, None


@pytest.mark.parametrize("intruder", INTRUDERS)
@pytest.mark.parametrize("route", list(API_MATRIX), ids=[f"{m} {p}" for m, p in API_MATRIX])
async def test_partner_api_isolation(
    services: Services,
    victim: Victim,
    other: PartnerFixture,
    route: tuple[str, str],
    intruder: str,
) -> None:
    method, _ = route
    call = API_MATRIX[route]
    client, code = _caller(intruder, victim, other)
    path = fill(call.path, victim.ids)
    body = fill(call.body, victim.ids)
    params = fill(call.params, victim.ids)
    response = await client.call(method, path, body, params=params, code=code)
    expected = {
        "other partner, own path": call.foreign,
        "other partner, victim's path": None,
        "same partner, live": call.other_mode,
    }[intruder] or 404
    assert response.status_code == expected, response.text
    if expected == 404:
        answer = response.json()
        assert set(answer) == {"type", "message", "errors"}
        assert answer["type"] == "not_found" and answer["errors"] == {}
    assert victim.leaked(response, f"{path} {body} {params}") == []
    assert await partner_state(services, victim.partner.id, "sandbox") == victim.baseline


async def test_lists_show_only_the_callers_partner_and_mode(
    victim: Victim, other: PartnerFixture
) -> None:
    own = (await victim.partner.sandbox.call("GET", "bookings/", params={"limit": 100})).json()
    assert {b["id"] for b in own["results"]} == {
        victim.ids["booking"],
        victim.ids["pending"],
        victim.ids["cancellable"],
        victim.ids["renewable"],
        victim.ids["updatable"],
    }
    for client in (victim.partner.live, other.sandbox, other.live):
        listed = (await client.call("GET", "bookings/")).json()
        assert victim.ids["booking"] not in str(listed)
        keys = (await client.call("GET", "api_keys/")).json()
        assert victim.ids["api_key"] not in str(keys)
        messages = (await client.call("GET", "messages/", params={"limit": 100})).json()
        assert victim.ids["message"] not in str(messages)


async def test_auxiliary_data_is_the_same_for_every_partner(
    victim: Victim, other: PartnerFixture, http: httpx.AsyncClient
) -> None:
    for path in (
        "/api/auxiliary/countries/",
        "/api/auxiliary/countries/NG/",
        "/api/auxiliary/countries/NG/regions/",
        "/api/auxiliary/currencies/",
        "/api/auxiliary/languages/",
    ):
        answers = []
        for client in (victim.partner.sandbox, other.live):
            secret = client.credential.api_secret
            response = await http.get(path, headers={"Authorization": f"Bearer {secret}"})
            assert response.status_code == 200, path
            answers.append(response.content)
        assert answers[0] == answers[1], path
        assert (await http.get(path)).status_code == 401


async def test_documents_show_no_personal_data_without_the_booking_token(
    services: Services, victim: Victim, http: httpx.AsyncClient
) -> None:
    booking = (
        await victim.partner.sandbox.call("GET", f"bookings/{victim.ids['booking']}/")
    ).json()
    before = await partner_state(services, victim.partner.id)
    pds = await http.get(f"/pds/{victim.ids['booking']}")
    assert pds.status_code == 200
    assert SURNAME not in pds.text and EMAIL not in pds.text
    for token in ("", "wrong-token", booking["security_token"][:-1]):
        refused = await http.get(f"/coi/{victim.ids['booking']}", params={"security_token": token})
        assert refused.status_code == 404, token
        assert SURNAME not in refused.text
    certificate = await http.get(
        f"/coi/{victim.ids['booking']}", params={"security_token": booking["security_token"]}
    )
    assert certificate.status_code == 200 and SURNAME in certificate.text
    # An unbooked package has no certificate, whatever the token.
    quote = await http.get(f"/coi/{victim.ids['package']}", params={"security_token": "x"})
    assert quote.status_code == 404
    assert await partner_state(services, victim.partner.id) == before


# ------------------------------------------------------------------------------ the dashboard


@dataclass(frozen=True)
class Page:
    """One dashboard route under /dashboard/{code}/{mode}: the request made, and what a user
    gets where it acts on the user's own data (None: it names a victim's resource, so 404)."""

    path: str
    form: dict[str, str] | None = None
    own: int | None = None
    other_mode: int | None = None


TEMPLATE = "messaging/templates/purchase/email/en"
DASHBOARD_MATRIX: dict[tuple[str, str], Page] = {
    ("GET", "/{code}/{mode}"): Page("", own=200, other_mode=200),
    ("GET", "/{code}/{mode}/bookings"): Page("bookings", own=200, other_mode=200),
    ("GET", "/{code}/{mode}/bookings/{booking_id}"): Page("bookings/{booking}"),
    ("GET", "/{code}/{mode}/webhooks"): Page("webhooks", own=200, other_mode=200),
    ("POST", "/{code}/{mode}/webhooks"): Page(
        "webhooks", {"url": "http://127.0.0.1:9/intruder", "format": "xcover"}, 303, 303
    ),
    ("POST", "/{code}/{mode}/webhooks/{endpoint_id}/quick"): Page(
        "webhooks/{endpoint}/quick", {"url": "http://127.0.0.1:9/stolen", "enabled": "on"}
    ),
    ("GET", "/{code}/{mode}/webhooks/{endpoint_id}"): Page("webhooks/{endpoint}"),
    ("POST", "/{code}/{mode}/webhooks/{endpoint_id}"): Page(
        "webhooks/{endpoint}", {"url": "http://127.0.0.1:9/stolen", "format": "xcover"}
    ),
    ("POST", "/{code}/{mode}/webhooks/{endpoint_id}/secret"): Page(
        "webhooks/{endpoint}/secret", {}
    ),
    ("POST", "/{code}/{mode}/webhooks/{endpoint_id}/rotate"): Page(
        "webhooks/{endpoint}/rotate", {}
    ),
    ("POST", "/{code}/{mode}/webhooks/{endpoint_id}/test"): Page("webhooks/{endpoint}/test", {}),
    ("POST", "/{code}/{mode}/webhooks/{endpoint_id}/recover"): Page(
        "webhooks/{endpoint}/recover", {"since": "2000-01-01T00:00"}
    ),
    ("POST", "/{code}/{mode}/webhooks/{endpoint_id}/delete"): Page(
        "webhooks/{endpoint}/delete", {}
    ),
    ("GET", "/{code}/{mode}/webhooks/{endpoint_id}/deliveries/{delivery_id}"): Page(
        "webhooks/{endpoint}/deliveries/{delivery}"
    ),
    ("POST", "/{code}/{mode}/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"): Page(
        "webhooks/{endpoint}/deliveries/{delivery}/redeliver", {}
    ),
    ("GET", "/{code}/{mode}/api-keys"): Page("api-keys", own=200, other_mode=200),
    ("POST", "/{code}/{mode}/api-keys"): Page("api-keys", {}, own=200, other_mode=200),
    ("POST", "/{code}/{mode}/api-keys/{api_key}/revoke"): Page("api-keys/{api_key}/revoke", {}),
    ("GET", "/{code}/{mode}/sandbox"): Page("sandbox", own=200, other_mode=404),
    ("POST", "/{code}/{mode}/sandbox"): Page("sandbox", {"advance": "PT1M"}, 303, 404),
    ("GET", "/{code}/{mode}/messaging"): Page("messaging", own=200, other_mode=200),
    ("POST", "/{code}/{mode}/messaging"): Page(
        "messaging", {"enabled": "on", "channels": "email", "sender_name": "Intruder"}, 303, 303
    ),
    ("GET", "/{code}/{mode}/messaging/templates/{event}/{channel}/{language}"): Page(
        TEMPLATE + "?booking={booking}", own=200, other_mode=200
    ),
    ("POST", "/{code}/{mode}/messaging/templates/{event}/{channel}/{language}"): Page(
        TEMPLATE, {"text": "Hi", "booking": "{booking}", "action": "preview"}, 200, 200
    ),
    ("POST", "/{code}/{mode}/messaging/templates/{event}/{channel}/{language}/preview"): Page(
        TEMPLATE + "/preview", {"text": "Hi", "booking": "{booking}"}, 200, 200
    ),
    ("POST", "/{code}/{mode}/messaging/templates/{event}/{channel}/{language}/delete"): Page(
        "messaging/templates/purchase/sms/en/delete", {}, 404, 404
    ),
    ("GET", "/{code}/{mode}/messaging/log"): Page(
        "messaging/log?booking={booking}", own=200, other_mode=200
    ),
    ("GET", "/{code}/{mode}/messaging/log/{message_id}"): Page("messaging/log/{message}"),
}
# The viewer's own session and account: they name no partner's resources.
DASHBOARD_OWN = {
    ("GET", "/sign-in"),
    ("POST", "/sign-in"),
    ("POST", "/sign-out"),
    ("GET", "/"),
    ("GET", "/switch"),
    ("GET", "/account"),
    ("POST", "/account/password"),
}
# The operator's pages: a partner's user gets 404, and nothing changes.
OPERATOR_PAGES: dict[tuple[str, str], dict[str, str] | None] = {
    ("GET", "/operator/partners"): None,
    ("POST", "/operator/partners"): {"name": "Sneaky"},
    ("POST", "/operator/partners/{code}/suspend"): {},
    ("POST", "/operator/partners/{code}/reactivate"): {},
    ("GET", "/operator/products"): None,
    ("GET", "/operator/products/versions/{version_id}"): None,
    ("POST", "/operator/products"): {"document": "products: []"},
}
VIEWERS = ["other partner's user, victim's URL", "other partner's user, own URL", "own user, live"]


@dataclass
class Viewers:
    """Browsers signed in once for the module: a user of the victim, one of the intruder."""

    own: Browser
    other: Browser
    other_code: str


@pytest.fixture(scope="module")
async def viewers(
    settings: Settings, services: Services, victim: Victim, other: PartnerFixture
) -> AsyncIterator[Viewers]:
    own_user = await add_user(services, partner_id=victim.partner.id)
    other_user = await add_user(services, partner_id=other.id)
    async with (
        browser_for(settings, services) as own_browser,
        browser_for(settings, services) as other_browser,
    ):
        assert (await own_browser.sign_in(own_user.email)).status_code == 303
        assert (await other_browser.sign_in(other_user.email)).status_code == 303
        # The victim's user and its sign-in time are part of the victim from here on.
        victim.baseline = await partner_state(services, victim.partner.id, "sandbox")
        yield Viewers(own_browser, other_browser, other.code)


def _dashboard_request(viewer: str, victim: Victim, viewers: Viewers) -> tuple[Browser, str]:
    if viewer == "own user, live":
        return viewers.own, f"/dashboard/{victim.partner.code}/live"
    if viewer == "other partner's user, own URL":
        return viewers.other, f"/dashboard/{viewers.other_code}/sandbox"
    return viewers.other, f"/dashboard/{victim.partner.code}/sandbox"


@pytest.mark.parametrize("viewer", VIEWERS)
@pytest.mark.parametrize(
    "route", list(DASHBOARD_MATRIX), ids=[f"{m} {p}" for m, p in DASHBOARD_MATRIX]
)
async def test_dashboard_isolation(
    services: Services, victim: Victim, viewers: Viewers, route: tuple[str, str], viewer: str
) -> None:
    method, _ = route
    page = DASHBOARD_MATRIX[route]
    browser, base = _dashboard_request(viewer, victim, viewers)
    relative = fill(page.path, victim.ids)
    url = f"{base}/{relative}" if relative else base
    form = fill(page.form, victim.ids)
    if method == "GET":
        response = await browser.get(url)
    else:
        response = await browser.post(url, form)
    expected = {
        "other partner's user, victim's URL": None,
        "other partner's user, own URL": page.own,
        "own user, live": page.other_mode,
    }[viewer] or 404
    assert response.status_code == expected, response.text[:2000]
    assert victim.leaked(response, f"{url} {form}") == []
    assert await partner_state(services, victim.partner.id, "sandbox") == victim.baseline


async def test_another_partners_dashboard_looks_like_no_partner(
    victim: Victim, viewers: Viewers
) -> None:
    missing = await viewers.other.get("/dashboard/ZZZZZ/sandbox/bookings")
    foreign = await viewers.other.get(f"/dashboard/{victim.partner.code}/sandbox/bookings")
    assert missing.status_code == foreign.status_code == 404
    assert missing.text == foreign.text


@pytest.mark.parametrize("route", list(OPERATOR_PAGES), ids=[f"{m} {p}" for m, p in OPERATOR_PAGES])
async def test_operator_pages_answer_404_to_partner_users(
    services: Services, victim: Victim, viewers: Viewers, route: tuple[str, str]
) -> None:
    method, path = route
    url = "/dashboard" + path.format(code=victim.partner.code, version_id="anything")
    before = await partner_state(services, victim.partner.id)
    for browser in (viewers.own, viewers.other):
        if method == "GET":
            response = await browser.get(url)
        else:
            response = await browser.post(url, OPERATOR_PAGES[route])
        assert response.status_code == 404, url
        assert victim.leaked(response, url) == []
    assert await partner_state(services, victim.partner.id) == before
    switched = await viewers.own.get("/dashboard/switch", partner=victim.partner.code)
    assert switched.status_code == 404


async def test_the_victims_own_pages_show_its_data(victim: Victim, viewers: Viewers) -> None:
    """The control: the same URLs, for the victim's user in sandbox, show what the others
    could not see, so the 404s above are about who asks."""
    base = f"/dashboard/{victim.partner.code}/sandbox"
    for relative, shown in (
        (f"bookings/{victim.ids['booking']}", SURNAME),
        (f"webhooks/{victim.ids['endpoint']}", HOOK_PATH),
        (f"messaging/log/{victim.ids['message']}", EMAIL),
        (TEMPLATE, TEMPLATE_MARK),
        ("messaging", SENDER_MARK),
        ("api-keys", victim.ids["api_key"]),
    ):
        response = await viewers.own.get(f"{base}/{relative}")
        assert response.status_code == 200, relative
        assert shown in response.text, relative
