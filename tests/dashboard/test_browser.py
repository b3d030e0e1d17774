"""The dashboard in Debian's Chromium, driven by Playwright, against a real `coverline serve`
with its embedded worker and a real webhook receiver. Every page is saved as a screenshot,
desktop and phone width, in artifacts/screenshots/.

Run alone: `uv run pytest -m browser -p no:asyncio tests/dashboard` (sync Playwright and
pytest-asyncio do not share a process well)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from standardwebhooks import Webhook

from tests.dashboard.browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LoopThread,
    SyncReceiver,
    api,
    cli,
    reload_until,
    screenshot,
    sign_in,
    start_receiver,
)
from tests.fixtures.gadget import gadget_booking
from tests.fixtures.payloads import instant_booking_request, policyholder, ticket_item
from tests.fixtures.receiver import Answer
from tests.fixtures.server import CoverlineServer, running_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "browser-test-password"
OPERATOR_PASSWORD = "operator-test-password"
XSS = "<script>alert(1)</script>"


@dataclass
class World:
    server: CoverlineServer
    hooks: SyncReceiver
    code: str
    other_code: str
    sandbox_secret: str
    other_secret: str
    email: str
    other_email: str
    operator_email: str
    operator_one_time: str

    @property
    def base(self) -> str:
        return self.server.base_url

    def url(self, relative: str = "", mode: str = "sandbox", code: str | None = None) -> str:
        path = f"{self.base}/dashboard/{code or self.code}/{mode}"
        return f"{path}/{relative}" if relative else path

    def book(self, body: dict[str, Any], *, other: bool = False) -> dict[str, Any]:
        code, secret = (
            (self.other_code, self.other_secret) if other else (self.code, self.sandbox_secret)
        )
        with api(self.server, secret) as client:
            response = client.post(f"/api/partners/{code}/instant_booking/", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, loop: LoopThread
) -> Iterator[World]:
    if not CHROMIUM.exists():
        missing = "Debian's chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    hooks, receiver = start_receiver(loop)
    env = {"COVERLINE_WEBHOOKS_ALLOW_PRIVATE_NETWORKS": "true"}
    with running_server(tmp_path_factory.mktemp("dashboard"), env=env, request=request) as server:
        server.load_catalog()
        partner = server.create_partner("Browser Travel")
        other = server.create_partner("Other Partner")
        # The password piped in; the operator's printed once, with no standard input.
        email, other_email = "anna@browser.example", "bob@other.example"
        cli(server, ["user", "create", "--partner", partner["code"], "--email", email], PASSWORD)
        cli(
            server, ["user", "create", "--partner", other["code"], "--email", other_email], PASSWORD
        )
        printed = cli(
            server, ["user", "create", "--operator", "--email", "ops@coverline.example"], None
        )
        one_time = re.search(r"One-time password .*: (\S+)", printed)
        assert one_time is not None, printed
        yield World(
            server=server,
            hooks=hooks,
            code=partner["code"],
            other_code=other["code"],
            sandbox_secret=partner["sandbox"]["api_secret"],
            other_secret=other["sandbox"]["api_secret"],
            email=email,
            other_email=other_email,
            operator_email="ops@coverline.example",
            operator_one_time=one_time.group(1),
        )
    loop.run(receiver.__aexit__(None, None, None))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    opened.dialogs = dialogs  # type: ignore[attr-defined]
    yield opened
    context.close()


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def as_user(page: Page, world: World) -> Page:
    sign_in(page, world.base, world.email, PASSWORD)
    expect(page).to_have_url(world.url())
    return page


# ------------------------------------------------------------------------------ stories


def test_sign_in_mode_switch_keyboard_and_sign_out(page: Page, world: World) -> None:
    page.goto(f"{world.base}/dashboard/")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in\?next="))
    screenshot(page, "01-sign-in")
    sign_in(page, world.base, world.email, "not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("Sign-in failed")
    screenshot(page, "02-sign-in-failed")

    as_user(page, world)
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    mode = page.get_by_role("group", name="Mode")
    expect(mode.get_by_role("link", name="Sandbox")).to_have_attribute("aria-current", "true")
    mode.get_by_role("link", name="Live").click()
    expect(page).to_have_url(world.url(mode="live"))
    expect(page.locator(".mode-banner")).to_contain_text("Live mode")
    # Keyboard: the first Tab reaches the skip link, which moves to the main content.
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))
    page.get_by_role("group", name="Mode").get_by_role("link", name="Sandbox").click()
    expect(page).to_have_url(world.url())

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_contain_text("You are signed out")
    page.goto(world.url("bookings"))
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in"))


def test_webhooks_on_then_a_booking_shows_and_its_webhook_arrives(page: Page, world: World) -> None:
    as_user(page, world)
    nav(page, "Webhooks")
    screenshot(page, "10-webhooks-empty")
    switch = page.get_by_role("switch", name="Enable webhooks")
    switch.uncheck()
    switch.check()
    page.get_by_label("Webhook URL").fill(world.hooks.url)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Created")
    # A scheme the test can verify with the standardwebhooks package.
    page.get_by_label("Signature scheme").select_option("standard")
    page.get_by_role("button", name="Save").first.click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    endpoint_url = page.url.split("?")[0]

    booking = world.book(instant_booking_request(partner_transaction_id="order-browser-1"))
    nav(page, "Bookings")
    expect(page.get_by_role("link", name=booking["id"])).to_be_visible()
    page.get_by_role("searchbox", name="Search").fill("order-browser-1")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("tbody tr")).to_have_count(1)
    screenshot(page, "20-bookings")

    world.hooks.wait_for(lambda got: any(r.json()["event"] == "BOOKING_CREATED" for r in got))
    arrived = next(r for r in world.hooks.received if r.json()["event"] == "BOOKING_CREATED")
    assert arrived.json()["payload"]["id"] == booking["id"]
    secret = _revealed_secret(page, endpoint_url)
    Webhook(secret).verify(arrived.body, arrived.headers)

    reload_until(page, world.url(f"bookings/{booking['id']}"), "Webhook BOOKING_CREATED")
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    screenshot(page, "21-booking")
    reload_until(page, endpoint_url, "badge-succeeded")
    screenshot(page, "11-webhook-endpoint")


def _revealed_secret(page: Page, endpoint_url: str) -> str:
    page.goto(endpoint_url)
    page.get_by_role("button", name="Reveal the secret").click()
    return page.locator("#signing-secret").inner_text().strip()


def _endpoint_url(page: Page, world: World) -> str:
    page.goto(world.url("webhooks"))
    page.get_by_role("link", name=re.compile("Settings, secret and delivery log")).first.click()
    return page.url.split("?")[0]


def test_a_failing_delivery_is_redelivered_from_the_log(page: Page, world: World) -> None:
    as_user(page, world)
    endpoint_url = _endpoint_url(page, world)
    endpoint_id = endpoint_url.rsplit("/", 1)[1]
    # No automatic retries, so that the failure is final at once.
    with api(world.server, world.sandbox_secret) as client:
        patched = client.patch(
            f"/api/partners/{world.code}/webhooks/{endpoint_id}/", json={"retry_schedule": []}
        )
        assert patched.status_code == 200, patched.text
    before = len(world.hooks.received)
    world.hooks.answer(Answer(status=500, body="receiver is down"))
    page.goto(endpoint_url)
    page.get_by_role("button", name="Send a test event").click()
    expect(page.get_by_role("status")).to_contain_text("test event is on its way")
    world.hooks.wait_for(lambda got: len(got) > before)

    reload_until(page, endpoint_url + "?status=failed", "WEBHOOK_TEST")
    page.get_by_role("link", name=re.compile("WEBHOOK_TEST delivery")).first.click()
    expect(page.get_by_text("HTTP 500").first).to_be_visible()
    expect(page.get_by_text("receiver is down")).to_be_visible()
    expect(page.get_by_role("cell", name="webhook-signature").first).to_be_visible()
    screenshot(page, "12-webhook-delivery-failed")
    page.get_by_role("button", name="Redeliver").click()
    expect(page.get_by_role("status")).to_contain_text("queued again")
    world.hooks.wait_for(lambda got: len(got) > before + 1)
    delivery_url = page.url.split("?")[0]
    reload_until(page, delivery_url, "badge-succeeded")
    screenshot(page, "13-webhook-delivery-redelivered")


def test_the_rotated_secret_signs_the_next_delivery(page: Page, world: World) -> None:
    as_user(page, world)
    endpoint_url = _endpoint_url(page, world)
    old = _revealed_secret(page, endpoint_url)
    page.get_by_role("button", name="Rotate the secret").click()
    expect(page.get_by_role("status").first).to_contain_text("rotated")
    new = page.locator("#signing-secret").inner_text().strip()
    assert new.startswith("whsec_") and new != old
    screenshot(page, "14-webhook-secret-rotated")

    booking = world.book(instant_booking_request())
    world.hooks.wait_for(
        lambda got: any(r.json().get("payload", {}).get("id") == booking["id"] for r in got)
    )
    arrived = next(
        r for r in world.hooks.received if r.json().get("payload", {}).get("id") == booking["id"]
    )
    Webhook(new).verify(arrived.body, arrived.headers)


def test_the_sandbox_clock_brings_renewal_deliveries_into_the_log(page: Page, world: World) -> None:
    as_user(page, world)
    start = datetime.now(UTC) + timedelta(hours=1)
    booking = world.book(gadget_booking(start))
    nav(page, "Sandbox clock")
    screenshot(page, "30-sandbox-clock")
    page.get_by_label("Advance by").fill("P40D")
    page.get_by_role("button", name="Move the clock").click()
    expect(page.get_by_role("status")).to_contain_text("clock moved forward")
    expect(page.get_by_role("heading", name="Events produced by the last move")).to_be_visible()
    for event in ("RENEWAL_NOTIFICATION", "RENEWAL_DUE"):
        expect(page.get_by_role("cell", name=event).first).to_be_visible()
    expect(page.get_by_role("link", name=booking["id"]).first).to_be_visible()
    screenshot(page, "31-sandbox-clock-moved")

    endpoint_url = _endpoint_url(page, world)
    reload_until(page, endpoint_url, "<code>RENEWAL_DUE</code></td>")
    expect(page.get_by_role("cell", name="RENEWAL_NOTIFICATION").first).to_be_visible()
    world.hooks.wait_for(
        lambda got: {"RENEWAL_NOTIFICATION", "RENEWAL_DUE"} <= {r.json()["event"] for r in got}
    )


def test_another_partners_urls_show_404_and_a_script_name_is_text(page: Page, world: World) -> None:
    other = world.book(
        instant_booking_request(policyholder=policyholder(last_name="Otherpartnerly")), other=True
    )
    # After the sandbox clock moved 40 days: a start date beyond the sandbox's "now".
    later = ticket_item(start_in=timedelta(days=100))
    xss = world.book(instant_booking_request(later, policyholder=policyholder(first_name=XSS)))
    as_user(page, world)
    for path in ("", "bookings", f"bookings/{other['id']}", "webhooks", "api-keys"):
        response = page.goto(world.url(path, code=world.other_code))
        assert response is not None and response.status == 404
        expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
        assert "Otherpartnerly" not in page.content()
    screenshot(page, "90-not-found")
    page.goto(world.url(f"bookings/{xss['id']}"))
    expect(page.get_by_text(f"{XSS} Mcintosh").first).to_be_visible()
    page.goto(world.url("bookings"))
    expect(page.get_by_text(XSS).first).to_be_visible()
    time.sleep(0.2)
    assert page.dialogs == []  # type: ignore[attr-defined]


def test_a_form_posted_without_its_csrf_token_changes_nothing(page: Page, world: World) -> None:
    as_user(page, world)
    page.goto(world.url("api-keys"))
    rows = page.locator("tbody tr").count()
    page.locator("form[action$='/api-keys'] input[name=csrf_token]").evaluate(
        "field => field.remove()"
    )
    page.get_by_role("button", name="Create a new sandbox key").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    page.goto(world.url("api-keys"))
    expect(page.locator("tbody tr")).to_have_count(rows)


def test_screenshots_of_every_page(page: Page, world: World) -> None:
    as_user(page, world)
    pages = {
        "03-overview": world.url(),
        "04-overview-live": world.url(mode="live"),
        "22-bookings-filtered": world.url("bookings") + "?status=CONFIRMED&product=gadget_cover",
        "15-webhooks": world.url("webhooks"),
        "40-api-keys": world.url("api-keys"),
        "50-messaging": world.url("messaging"),
        "51-messaging-email-template": world.url("messaging/templates/purchase/email/en"),
        "60-account": f"{world.base}/dashboard/account",
    }
    for name, url in pages.items():
        page.goto(url)
        screenshot(page, name)
    # The live preview follows the typing (htmx posts the draft, the server renders it).
    page.goto(world.url("messaging/templates/purchase/sms/en"))
    page.get_by_label("Message").fill("Hi {{ customer.first_name }}, you are covered.")
    expect(page.locator("#preview")).to_contain_text("Hi Ọláolúwa, you are covered.")
    screenshot(page, "52-messaging-sms-live-preview")
    page.goto(world.url("messaging/log"))
    screenshot(page, "53-message-log")
    page.get_by_role("link", name=re.compile("purchase message")).first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Purchase")
    screenshot(page, "54-message")

    page.goto(world.url("api-keys"))
    page.get_by_role("button", name="Create a new sandbox key").click()
    expect(page.get_by_text("shown this once")).to_be_visible()
    screenshot(page, "41-api-key-created")

    # The operator: a one-time password from the CLI, changed at the first sign-in.
    page.context.clear_cookies()
    one_time = world.operator_one_time
    sign_in(page, world.base, world.operator_email, one_time)
    expect(page).to_have_url(f"{world.base}/dashboard/account")
    page.get_by_label("Current password").fill(one_time)
    page.get_by_label("New password", exact=True).fill(OPERATOR_PASSWORD)
    page.get_by_label("New password again").fill(OPERATOR_PASSWORD)
    page.get_by_role("button", name="Change the password").click()
    expect(page.get_by_role("status")).to_contain_text("password is changed")
    page.goto(f"{world.base}/dashboard/operator/partners")
    screenshot(page, "70-operator-partners")
    expect(page.get_by_role("cell", name=world.other_code, exact=True)).to_be_visible()
    page.get_by_label("Partner", exact=True).select_option(world.other_code)
    page.get_by_role("button", name="Open").click()
    expect(page).to_have_url(re.compile(f"/dashboard/{world.other_code}/"))
    screenshot(page, "71-operator-sees-another-partner")
    page.goto(f"{world.base}/dashboard/operator/products")
    screenshot(page, "72-operator-products")
    page.get_by_role("link", name=re.compile("Revision")).first.click()
    screenshot(page, "73-operator-product-version")
