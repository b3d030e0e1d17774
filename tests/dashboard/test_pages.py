"""What the dashboard's pages show and what their forms do, in process."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from coverline.cli import DEMO_CATALOG
from coverline.config import Settings
from coverline.dashboard.models import DashboardUser
from coverline.dashboard.views import bookings as bookings_view
from coverline.partners.models import ApiCredential, Partner
from coverline.runtime import Services
from coverline.webhooks import service as webhooks_service
from coverline.webhooks.dispatcher import Dispatcher
from coverline.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import PartnerFixture
from tests.dashboard.conftest import SignedIn
from tests.dashboard.helpers import PASSWORD, Browser, add_user, browser_for
from tests.fixtures.gadget import gadget_booking
from tests.fixtures.payloads import instant_booking_request, policyholder
from tests.fixtures.receiver import Answer, Receiver
from tests.fixtures.webhooks import add_endpoint


async def book(partner: PartnerFixture, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await partner.sandbox.call(
        "POST", "instant_booking/", body or instant_booking_request()
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def endpoints_of(services: Services, partner_id: int) -> list[WebhookEndpoint]:
    async with services.database.reading() as session:
        found = await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.partner_id == partner_id)
            .order_by(WebhookEndpoint.id)
        )
        return list(found)


def location(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    return response.headers["location"]


# ------------------------------------------------------------------------------ webhooks


async def test_mycover_flow_turns_webhooks_on_with_a_url(
    signed_in: SignedIn, services: Services
) -> None:
    page = await signed_in.browser.get(signed_in.url("webhooks"))
    assert "Enable webhooks" in page.text and 'role="switch"' in page.text
    saved = await signed_in.browser.post(
        signed_in.url("webhooks"),
        {"enabled": "on", "url": "https://hooks.example.com/in", "format": "mycover"},
    )
    [endpoint] = await endpoints_of(services, signed_in.partner.id)
    assert location(saved) == signed_in.url(f"webhooks/{endpoint.public_id}") + "?notice=created"
    assert (endpoint.enabled, endpoint.url, endpoint.format, endpoint.signature) == (
        True,
        "https://hooks.example.com/in",
        "mycover",
        "mycover",
    )
    # The switch off and a second URL, from the list's own form.
    off = await signed_in.browser.post(
        signed_in.url(f"webhooks/{endpoint.public_id}/quick"),
        {"url": "https://hooks.example.com/other"},
    )
    assert location(off) == signed_in.url("webhooks") + "?notice=saved"
    [endpoint] = await endpoints_of(services, signed_in.partner.id)
    assert (endpoint.enabled, endpoint.url) == (False, "https://hooks.example.com/other")


async def test_a_bad_url_is_explained_and_nothing_is_saved(
    signed_in: SignedIn, services: Services
) -> None:
    for url in ("not a url", "http://10.0.0.1/hooks" if False else "ftp://example.com/x"):
        response = await signed_in.browser.post(
            signed_in.url("webhooks"), {"enabled": "on", "url": url}
        )
        assert response.status_code == 422
        assert "There is a problem" in response.text
    assert await endpoints_of(services, signed_in.partner.id) == []


async def test_endpoint_settings_format_signature_and_event_filter(
    signed_in: SignedIn, services: Services, receiver: Receiver
) -> None:
    created = await add_endpoint(signed_in.partner.sandbox, receiver.url)
    path = signed_in.url(f"webhooks/{created['id']}")
    page = await signed_in.browser.get(path)
    assert "BOOKING_CANCELLED" in page.text and "Delivery log" in page.text
    saved = await signed_in.browser.post(
        path,
        {
            "enabled": "on",
            "url": receiver.url,
            "format": "xcover",
            "signature": "standard",
            "events_filter": "some",
            "events": ["BOOKING_CREATED", "RENEWAL_DUE", "not-an-event"],
        },
    )
    assert location(saved) == path + "?notice=saved"
    [endpoint] = await endpoints_of(services, signed_in.partner.id)
    assert (endpoint.signature, endpoint.events) == ("standard", ["BOOKING_CREATED", "RENEWAL_DUE"])
    # A format change resets the filter: the names of the old format mean nothing in the new.
    await signed_in.browser.post(
        path,
        {
            "enabled": "on",
            "url": receiver.url,
            "format": "mycover",
            "signature": "mycover",
            "events_filter": "some",
            "events": ["BOOKING_CREATED"],
        },
    )
    [endpoint] = await endpoints_of(services, signed_in.partner.id)
    assert (endpoint.format, endpoint.signature, endpoint.events) == ("mycover", "mycover", None)
    refused = await signed_in.browser.post(
        path,
        {
            "enabled": "on",
            "url": receiver.url,
            "format": "mycover",
            "signature": "mycover",
            "events_filter": "some",
        },
    )
    assert refused.status_code == 422 and "Choose at least one event" in refused.text


async def test_reveal_and_rotate_the_secret(
    signed_in: SignedIn, services: Services, receiver: Receiver
) -> None:
    created = await add_endpoint(signed_in.partner.sandbox, receiver.url, signature="standard")
    path = signed_in.url(f"webhooks/{created['id']}")
    assert created["secret"] not in (await signed_in.browser.get(path)).text
    revealed = await signed_in.browser.post(path + "/secret")
    assert revealed.status_code == 200 and created["secret"] in revealed.text
    rotated = await signed_in.browser.post(path + "/rotate")
    secret = re.search(r'id="signing-secret">([^<]+)<', rotated.text)
    assert secret is not None and secret.group(1).startswith("whsec_")
    assert secret.group(1) != created["secret"]
    again = await signed_in.browser.post(path + "/secret")
    assert secret.group(1) in again.text


async def test_test_event_log_redelivery_and_recovery(
    signed_in: SignedIn, services: Services, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    receiver.answer(Answer(status=500, body="boom"), Answer(500), Answer(500), Answer(500))
    created = await add_endpoint(signed_in.partner.sandbox, receiver.url)
    path = signed_in.url(f"webhooks/{created['id']}")
    sent = await signed_in.browser.post(path + "/test")
    assert location(sent) == path + "?notice=test-sent"
    await receiver.wait_for(4)
    delivery = await _wait_for_status(services, "failed")
    log = await signed_in.browser.get(path, status="failed")
    assert delivery.public_id in log.text and "WEBHOOK_TEST" in log.text
    page = await signed_in.browser.get(f"{path}/deliveries/{delivery.public_id}")
    assert page.status_code == 200
    assert "HTTP 500" in page.text and "boom" in page.text and "webhook-id" in page.text
    # The test event was made by the request that asked for it.
    assert f"<dt>Request id</dt><dd><code>{sent.headers['x-request-id']}</code></dd>" in page.text
    redelivered = await signed_in.browser.post(f"{path}/deliveries/{delivery.public_id}/redeliver")
    assert location(redelivered).endswith("?notice=redelivered")
    await receiver.wait_for(5)
    await _wait_for_status(services, "succeeded")
    # Fail it again, then send every failure since a time back.
    receiver.answer(*[Answer(500)] * 4)
    await signed_in.browser.post(f"{path}/deliveries/{delivery.public_id}/redeliver")
    await receiver.wait_for(9)
    await _wait_for_status(services, "failed")
    for out_of_range in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        refused = await signed_in.browser.post(path + "/recover", {"since": out_of_range})
        assert refused.status_code == 422 and "Give a date and time" in refused.text
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    recovered = await signed_in.browser.post(path + "/recover", {"since": since})
    assert recovered.status_code == 200
    assert "1 failed delivery since" in recovered.text
    await receiver.wait_for(10)
    await _wait_for_status(services, "succeeded")


async def _wait_for_status(services: Services, status: str) -> WebhookDelivery:
    import asyncio

    for _ in range(200):
        async with services.database.reading() as session:
            found = await session.scalar(
                select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(1)
            )
        if found is not None and found.status == status:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"the newest delivery never became {status}")


async def test_delete_an_endpoint(
    signed_in: SignedIn, services: Services, receiver: Receiver
) -> None:
    created = await add_endpoint(signed_in.partner.sandbox, receiver.url)
    deleted = await signed_in.browser.post(signed_in.url(f"webhooks/{created['id']}/delete"))
    assert location(deleted) == signed_in.url("webhooks") + "?notice=deleted"
    page = await signed_in.browser.get(signed_in.url(f"webhooks/{created['id']}"))
    assert page.status_code == 404


# ------------------------------------------------------------------------------ bookings


async def test_booking_search_filters_and_pages(signed_in: SignedIn) -> None:
    partner = signed_in.partner
    ada = await book(
        partner,
        instant_booking_request(
            policyholder=policyholder(
                first_name="Ada", last_name="Lovelace", email="ada@engine.example"
            ),
            partner_transaction_id="order-ada-1",
        ),
    )
    gadget = await book(partner, gadget_booking())
    for _ in range(20):
        await book(partner)
    browser = signed_in.browser
    url = signed_in.url("bookings")

    async def ids(**params: str) -> list[str]:
        page = await browser.get(url, **params)
        assert page.status_code == 200
        return re.findall(r'class="code">([A-Z0-9]{5}-[A-Z0-9]{5}-INS)<', page.text)

    assert await ids(q="ada lovelace") == [ada["id"]]
    assert await ids(q="LOVELACE") == [ada["id"]]
    assert await ids(q="ada@engine.example") == [ada["id"]]
    assert await ids(q="order-ada-1") == [ada["id"]]
    assert await ids(q=ada["id"].lower()) == [ada["id"]]
    assert await ids(q="100%_") == []
    assert await ids(product="gadget_cover") == [gadget["id"]]
    assert await ids(status="CANCELLED") == []
    assert len(await ids(status="CONFIRMED")) == 20
    today = datetime.now(UTC).date()
    assert await ids(**{"from": (today + timedelta(days=1)).isoformat()}) == []
    first = await ids(**{"from": today.isoformat(), "to": today.isoformat()})
    # The last day there is: no upper bound rather than a day past the calendar.
    assert await ids(**{"from": today.isoformat(), "to": "9999-12-31"}) == first
    second = await ids(page="2")
    assert len(first) == 20 and len(second) == 2
    assert not set(first) & set(second)
    page = await browser.get(url)
    assert "Page 1 of 2 (22 in all)" in page.text and "Next page" in page.text


async def test_booking_page_shows_quotes_renewals_and_one_timeline(
    signed_in: SignedIn, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await add_endpoint(signed_in.partner.sandbox, receiver.url)
    booking = await book(signed_in.partner, gadget_booking())
    await receiver.wait_for(1)
    page = await signed_in.browser.get(signed_in.url(f"bookings/{booking['id']}"))
    assert page.status_code == 200
    text = page.text
    assert "Ọláolúwa" in text and "Adéwálé" in text
    assert booking["quotes"][0]["price_formatted"] in text
    assert booking["quotes"][0]["next_renewal"]["id"] in text
    assert "Booking created" in text and "Webhook BOOKING_CREATED" in text
    assert text.index("Booking created") < text.index("Webhook BOOKING_CREATED")


async def test_a_long_timeline_shows_its_latest_part(
    signed_in: SignedIn, receiver: Receiver, dispatcher: Dispatcher, monkeypatch: Any
) -> None:
    """A booking renewed for years, with many endpoints, has thousands of events and
    deliveries: its page shows the latest (here two of each) and says where the rest are."""
    monkeypatch.setattr(bookings_view, "TIMELINE_EVENTS", 2)
    monkeypatch.setattr(bookings_view, "TIMELINE_DELIVERIES", 2)
    await add_endpoint(signed_in.partner.sandbox, receiver.url)
    booking = await book(signed_in.partner, gadget_booking())
    for phone in ("+2348031234568", "+2348031234569"):
        changed = await signed_in.partner.sandbox.call(
            "PATCH", f"bookings/{booking['id']}/", {"policyholder": {"phone": phone}}
        )
        assert changed.status_code == 200, changed.text
    await receiver.wait_for(3)
    page = await signed_in.browser.get(signed_in.url(f"bookings/{booking['id']}"))
    assert page.status_code == 200
    timeline = page.text[page.text.index("<h2>Timeline</h2>") :]
    assert "The latest 2 of 3 events are shown" in timeline
    assert "Booking created" not in timeline
    assert timeline.count('class="kind-event"') == 2
    assert timeline.count('class="kind-delivery"') == 2
    assert signed_in.url("messaging/log") in timeline and signed_in.url("webhooks") in timeline
    # Without the cut, all three and no note.
    monkeypatch.setattr(bookings_view, "TIMELINE_EVENTS", 100)
    monkeypatch.setattr(bookings_view, "TIMELINE_DELIVERIES", 500)
    whole = await signed_in.browser.get(signed_in.url(f"bookings/{booking['id']}"))
    assert whole.text.count('class="kind-event"') == 3
    assert "events are shown" not in whole.text


async def test_a_database_error_on_a_page_is_a_500_page(
    signed_in: SignedIn, monkeypatch: Any
) -> None:
    """The dashboard answers a database error itself: it used to be re-raised into the API's
    handler after the page was sent (a RuntimeError, and the connection dropped)."""
    from sqlalchemy.exc import DataError

    from coverline.dashboard import repository

    async def failing(*args: Any, **kwargs: Any) -> Any:
        raise DataError("SELECT 1", {}, ValueError("value too long"))

    booking = await book(signed_in.partner)
    monkeypatch.setattr(repository, "booking_events", failing)
    page = await signed_in.browser.get(signed_in.url(f"bookings/{booking['id']}"))
    assert page.status_code == 500
    assert "The page could not be shown. The error is logged." in page.text
    assert page.headers["x-frame-options"] == "DENY"


async def test_the_endpoint_bound_is_shown_on_the_webhooks_page(
    signed_in: SignedIn, services: Services, monkeypatch: Any
) -> None:
    monkeypatch.setattr(webhooks_service, "MAX_ENDPOINTS", 1)
    url = signed_in.url("webhooks")
    first = await signed_in.browser.post(url, {"enabled": "on", "url": "https://a.example/in"})
    assert first.status_code == 303
    second = await signed_in.browser.post(url, {"enabled": "on", "url": "https://b.example/in"})
    assert second.status_code == 422
    assert "A partner has at most 1 webhook endpoints in each mode; delete one first." in (
        second.text
    )
    assert len(await endpoints_of(services, signed_in.partner.id)) == 1


async def test_overview_charts_bookings_premium_and_webhook_health(
    signed_in: SignedIn, receiver: Receiver
) -> None:
    await add_endpoint(signed_in.partner.sandbox, receiver.url)
    first = await book(signed_in.partner)
    await book(signed_in.partner)
    page = await signed_in.browser.get(signed_in.url())
    assert page.status_code == 200
    assert page.text.count('<svg class="chart"') == 2
    assert "2 bookings from" in page.text
    assert "Premium and refunds per day in GBP" in page.text
    total = 2 * Decimal(str(first["total_price"]))
    assert f"£{total:,.2f}" in page.text
    assert receiver.url in page.text and "Webhook health" in page.text


# ------------------------------------------------------------------------------ API keys


async def test_api_key_secret_is_shown_once_then_revoked(
    signed_in: SignedIn, services: Services, http: httpx.AsyncClient
) -> None:
    url = signed_in.url("api-keys", mode="live")
    created = await signed_in.browser.post(url)
    assert created.status_code == 200
    key = re.search(r'id="new-api-key">(pk_live_[0-9a-f]+)<', created.text)
    secret = re.search(r'id="new-api-secret">(sk_live_[^<]+)<', created.text)
    assert key is not None and secret is not None
    listing = await signed_in.browser.get(url)
    assert key.group(1) in listing.text and secret.group(1) not in listing.text
    headers = {"Authorization": f"Bearer {secret.group(1)}"}
    bookings = f"/api/partners/{signed_in.partner.code}/bookings/"
    assert (await http.get(bookings, headers=headers)).status_code == 200
    revoked = await signed_in.browser.post(f"{url}/{key.group(1)}/revoke")
    assert location(revoked) == url + "?notice=revoked"
    assert (await http.get(bookings, headers=headers)).status_code == 401
    again = await signed_in.browser.post(f"{url}/{key.group(1)}/revoke")
    assert again.status_code == 409 and "revoked already" in again.text
    sandbox_key = signed_in.partner.sandbox.credential.api_key
    wrong_mode = await signed_in.browser.post(f"{url}/{sandbox_key}/revoke")
    assert wrong_mode.status_code == 404
    async with services.database.reading() as session:
        status = await session.scalar(
            select(ApiCredential.status).where(ApiCredential.api_key == sandbox_key)
        )
    assert status == "active"


# ------------------------------------------------------------------------------ sandbox


async def test_the_sandbox_clock_moves_and_shows_what_it_produced(
    signed_in: SignedIn, receiver: Receiver
) -> None:
    await add_endpoint(signed_in.partner.sandbox, receiver.url)
    booking = await book(signed_in.partner, gadget_booking())
    url = signed_in.url("sandbox")
    refused = await signed_in.browser.post(url, {"advance": "soon"})
    assert refused.status_code == 422 and "ISO 8601 duration" in refused.text
    moved = await signed_in.browser.post(url, {"advance": "P40D"})
    target = location(moved)
    assert target.startswith(url + "?after=")
    page = await signed_in.browser.get(target)
    for event in ("RENEWAL_NOTIFICATION", "RENEWAL_DUE"):
        assert event in page.text
    # An `after` no event id can be (past 64 bits, or negative) shows the latest events.
    for after in ("9223372036854775808", "-9223372036854775809", "99999999999999999999"):
        odd = await signed_in.browser.get(f"{url}?after={after}")
        assert odd.status_code == 200, after
        assert "RENEWAL_DUE" in odd.text
    assert booking["id"] in page.text and "Events produced by the last move" in page.text
    clock = await signed_in.partner.sandbox.call("GET", "sandbox/clock")
    assert clock.json()["offset_seconds"] >= 40 * 86400 - 5
    for back in ("2001-01-01T00:00", "0001-01-01T00:00"):
        backwards = await signed_in.browser.post(url, {"to": back})
        assert backwards.status_code == 422 and "only moves forward" in backwards.text, back
    for far in ({"to": "9000-12-31T23:59"}, {"to": "9999-12-31T23:59"}, {"advance": "P1000000Y"}):
        refused = await signed_in.browser.post(url, far)
        assert refused.status_code == 422 and "at most 100 years ahead" in refused.text
    assert (await signed_in.partner.sandbox.call("GET", "sandbox/clock")).json()[
        "offset_seconds"
    ] < 41 * 86400


# ------------------------------------------------------------------------------ operator


async def test_operator_creates_suspends_and_reactivates_a_partner(
    browser: Browser, services: Services, http: httpx.AsyncClient, settings: Settings
) -> None:
    operator = await add_user(services, partner_id=None, operator=True)
    await browser.sign_in(operator.email)
    created = await browser.post(
        "/dashboard/operator/partners",
        {"name": "Fresh Travel", "code": "", "email": "lead@fresh.example"},
    )
    assert created.status_code == 200
    code = re.search(r"Partner ([A-Z0-9]{5}) is created", created.text)
    secret = re.search(r"<code>(sk_sandbox_[^<]+)</code>", created.text)
    password = re.search(r"<code>([^<]+)</code> \(to be changed", created.text)
    assert code and secret and password
    headers = {"Authorization": f"Bearer {secret.group(1)}"}
    api = f"/api/partners/{code.group(1)}/bookings/"
    assert (await http.get(api, headers=headers)).status_code == 200

    # The first user signs in with the one-time password and must choose a new one.
    async with browser_for(settings, services) as lead:
        signed = await lead.sign_in("lead@fresh.example", password.group(1))
        assert signed.headers["location"] == "/dashboard/account"
        changed = await lead.post(
            "/dashboard/account/password",
            {
                "current_password": password.group(1),
                "new_password": PASSWORD,
                "confirm_password": PASSWORD,
            },
        )
        assert location(changed) == "/dashboard/account?notice=password-changed"

    suspended = await browser.post(f"/dashboard/operator/partners/{code.group(1)}/suspend")
    assert location(suspended) == "/dashboard/operator/partners?notice=suspended"
    assert (await http.get(api, headers=headers)).status_code == 401
    async with services.database.reading() as session:
        status = await session.scalar(select(Partner.status).where(Partner.code == code.group(1)))
        user = await session.scalar(
            select(DashboardUser).where(DashboardUser.email == "lead@fresh.example")
        )
    assert status == "suspended" and user is not None and not user.must_change_password
    async with browser_for(settings, services) as lead:
        assert (await lead.sign_in("lead@fresh.example")).status_code == 403
    await browser.post(f"/dashboard/operator/partners/{code.group(1)}/reactivate")
    assert (await http.get(api, headers=headers)).status_code == 200


async def test_operator_reads_the_catalogue_and_loads_a_new_version(
    browser: Browser, services: Services
) -> None:
    operator = await add_user(services, partner_id=None, operator=True)
    await browser.sign_in(operator.email)
    listing = await browser.get("/dashboard/operator/products")
    assert "Gadget Cover" in listing.text
    version = re.search(
        r'href="(/dashboard/operator/products/versions/[0-9a-f-]{36})"', listing.text
    )
    assert version is not None
    detail = await browser.get(version.group(1))
    assert detail.status_code == 200 and "pricing" in detail.text
    broken = await browser.post("/dashboard/operator/products", {"document": "products: [1]"})
    assert broken.status_code == 422 and "invalid catalogue" in broken.text
    assert "/tmp" not in broken.text
    # A product of its own, so that the catalogue the other tests use stays as it is.
    own = DEMO_CATALOG.read_text().replace("policy_type: gadget_cover", "policy_type: dash_gadget")
    first = await browser.post("/dashboard/operator/products", {"document": own})
    assert re.search(r"<code>dash_gadget</code> v1: revision 1 \(new version\)", first.text)
    assert re.search(r"<code>parcel_protection</code> v1: revision \d+ \(unchanged\)", first.text)
    changed = own.replace("policy_name: Gadget Cover", "policy_name: Gadget Cover Plus")
    loaded = await browser.post("/dashboard/operator/products", {"document": changed})
    assert loaded.status_code == 200
    assert re.search(r"<code>dash_gadget</code> v1: revision 2 \(new version\)", loaded.text)
    assert "Gadget Cover Plus" in (await browser.get("/dashboard/operator/products")).text
