"""The dashboard's own security properties, in process: sign-in, lock-out, CSRF on every
form, what an operator sees, escaping. Headers, cookies and the isolation of partners and
modes are proven in tests/security."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from coverline.catalog.models import Product, ProductVersion
from coverline.config import Settings
from coverline.dashboard.auth import MAX_FAILURES, SIGN_IN_FAILED
from coverline.dashboard.models import DashboardSession, DashboardUser
from coverline.kit.errors import Conflict, ValidationFailed
from coverline.partners.models import Partner
from coverline.runtime import Services
from tests.conftest import PartnerFixture, partner_state
from tests.dashboard.conftest import SignedIn
from tests.dashboard.helpers import (
    PASSWORD,
    Browser,
    add_user,
    browser_for,
    user_row,
)
from tests.fixtures.payloads import instant_booking_request, policyholder
from tests.fixtures.webhooks import add_endpoint

XSS = "<script>alert(1)</script>"


def rows(objects: Any) -> list[dict[str, Any]]:
    return [{c.key: getattr(o, c.key) for c in o.__table__.columns} for o in objects]


async def snapshot(services: Services, partner_id: int) -> dict[str, Any]:
    """partner_state, and what an operator's form could add: partners and products."""
    async with services.database.reading() as session:
        counts = {
            "partner_count": len(list(await session.scalars(select(Partner.id)))),
            "versions": len(list(await session.scalars(select(ProductVersion.id)))),
            "products": len(list(await session.scalars(select(Product.id)))),
        }
    return {**counts, **await partner_state(services, partner_id)}


async def book(partner: PartnerFixture, **holder: Any) -> dict[str, Any]:
    body = instant_booking_request(
        policyholder=policyholder(**holder), partner_transaction_id="order-7781"
    )
    response = await partner.sandbox.call("POST", "instant_booking/", body)
    assert response.status_code == 200, response.text
    return dict(response.json())


# ------------------------------------------------------------------------------ sign-in


async def test_the_database_keeps_only_a_digest_of_the_session_token(
    signed_in: SignedIn, services: Services
) -> None:
    token = signed_in.browser.client.cookies["coverline_session"]
    async with services.database.reading() as session:
        stored = list(
            await session.scalars(
                select(DashboardSession.token_hash).where(
                    DashboardSession.user_id == signed_in.user.id
                )
            )
        )
    assert stored and token not in stored


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    browser: Browser, partner: PartnerFixture, services: Services
) -> None:
    user = await add_user(services, partner_id=partner.id)
    wrong = await browser.sign_in(user.email, "not-the-password")
    unknown = await browser.sign_in("nobody@example.com", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401
    assert "coverline_session" not in browser.client.cookies
    for response in (wrong, unknown):
        assert SIGN_IN_FAILED.split(",")[0] in response.text


async def test_an_address_signs_in_as_it_was_written_when_created(
    browser: Browser, partner: PartnerFixture, services: Services, settings: Settings
) -> None:
    """Creation stores an address normalised (an IDN domain in Unicode, NFC, lower case);
    sign-in normalises what is typed the same way."""
    user = await add_user(services, partner_id=partner.id, email="Ana@xn--exmple-cua.com")
    assert user.email == "ana@exämple.com"
    for typed in ("Ana@xn--exmple-cua.com", "ana@exa\u0308mple.com", " ANA@EXÄMPLE.COM "):
        async with browser_for(settings, services) as fresh:
            assert (await fresh.sign_in(typed)).status_code == 303, typed


async def test_five_failures_lock_the_account_for_fifteen_minutes(
    browser: Browser, partner: PartnerFixture, services: Services
) -> None:
    user = await add_user(services, partner_id=partner.id)
    for _ in range(MAX_FAILURES):
        assert (await browser.sign_in(user.email, "wrong-password")).status_code == 401
    locked = await browser.sign_in(user.email, PASSWORD)
    assert locked.status_code == 401
    assert "coverline_session" not in browser.client.cookies
    row = await user_row(services, user.email)
    assert row.locked_until is not None
    assert timedelta(minutes=14) < row.locked_until - services.clock.now() <= timedelta(minutes=15)
    # Fifteen minutes later the right password works again and clears the count.
    async with services.database.transaction() as session:
        await session.execute(
            update(DashboardUser)
            .where(DashboardUser.id == user.id)
            .values(locked_until=services.clock.now() - timedelta(seconds=1))
        )
    assert (await browser.sign_in(user.email, PASSWORD)).status_code == 303
    row = await user_row(services, user.email)
    assert row.failed_logins == 0 and row.locked_until is None


async def test_failures_spread_over_more_than_fifteen_minutes_do_not_lock(
    browser: Browser, partner: PartnerFixture, services: Services
) -> None:
    user = await add_user(services, partner_id=partner.id)
    for _ in range(MAX_FAILURES - 1):
        await browser.sign_in(user.email, "wrong-password")
    async with services.database.transaction() as session:
        await session.execute(
            update(DashboardUser)
            .where(DashboardUser.id == user.id)
            .values(first_failed_at=services.clock.now() - timedelta(minutes=16))
        )
    await browser.sign_in(user.email, "wrong-password")
    row = await user_row(services, user.email)
    assert row.locked_until is None and row.failed_logins == 1
    assert (await browser.sign_in(user.email)).status_code == 303


async def test_sign_in_without_its_csrf_token_is_refused(
    browser: Browser, partner: PartnerFixture, services: Services
) -> None:
    user = await add_user(services, partner_id=partner.id)
    await browser.get("/dashboard/sign-in")
    response = await browser.client.post(
        "/dashboard/sign-in", data={"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 403
    assert "coverline_session" not in browser.client.cookies


async def test_a_form_of_too_many_fields_is_400_and_changes_nothing(
    signed_in: SignedIn, services: Services
) -> None:
    """Past 1,000 fields a form is refused as such (it used to be a 500), signed in or not."""
    browser = signed_in.browser
    many = {f"f{i}": "1" for i in range(1000)}
    before = await snapshot(services, signed_in.partner.id)
    for path in ("/dashboard/sign-in", "/dashboard/account/password", signed_in.url("sandbox")):
        response = await browser.post(path, {**many, "advance": "P1D"})
        assert response.status_code == 400, path
        assert response.headers["content-type"].startswith("text/html")
        assert "A form has at most 1000 fields; this one has more." in response.text
    assert await snapshot(services, signed_in.partner.id) == before
    # A thousand is still a form: this one is refused for its missing password, not its size.
    exactly = await browser.post("/dashboard/account/password", dict(list(many.items())[:999]))
    assert exactly.status_code == 422, exactly.text


async def test_sign_out_ends_the_session_on_the_server(signed_in: SignedIn) -> None:
    browser = signed_in.browser
    token = browser.client.cookies["coverline_session"]
    response = await browser.post("/dashboard/sign-out")
    assert response.status_code == 303
    browser.client.cookies.set("coverline_session", token, domain="cover.test", path="/dashboard")
    again = await browser.get(signed_in.url())
    assert again.status_code == 303
    assert again.headers["location"].startswith("/dashboard/sign-in")


async def test_pages_need_a_session(browser: Browser, partner: PartnerFixture) -> None:
    page = await browser.get(f"/dashboard/{partner.code}/sandbox/bookings")
    assert page.status_code == 303
    assert page.headers["location"] == (
        f"/dashboard/sign-in?next=%2Fdashboard%2F{partner.code}%2Fsandbox%2Fbookings"
    )
    form = await browser.client.post(f"/dashboard/{partner.code}/sandbox/api-keys")
    assert form.status_code == 403


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
async def test_sign_in_never_sends_the_browser_off_site(
    browser: Browser, partner: PartnerFixture, services: Services, target: str
) -> None:
    user = await add_user(services, partner_id=partner.id)
    page = await browser.get("/dashboard/sign-in", next=target)
    token = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
    assert token is not None
    response = await browser.client.post(
        "/dashboard/sign-in",
        data={
            "csrf_token": token.group(1),
            "email": user.email,
            "password": PASSWORD,
            "next": target,
        },
    )
    assert response.headers["location"] == "/dashboard/"


async def test_a_suspended_partners_users_cannot_sign_in_or_stay(
    signed_in: SignedIn, services: Services, settings: Settings
) -> None:
    async with services.database.transaction() as session:
        await session.execute(
            update(Partner).where(Partner.id == signed_in.partner.id).values(status="suspended")
        )
    page = await signed_in.browser.get(signed_in.url())
    assert page.status_code == 303
    async with browser_for(settings, services) as other:
        response = await other.sign_in(signed_in.user.email)
        assert response.status_code == 403
        assert "coverline_session" not in other.client.cookies


# ------------------------------------------------------------------------------ CSRF


async def test_every_form_without_the_csrf_token_is_refused_and_changes_nothing(
    signed_in: SignedIn, services: Services, settings: Settings, receiver: Any
) -> None:
    partner = signed_in.partner
    booking = await book(partner)
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    test = await partner.sandbox.call("POST", f"webhooks/{endpoint['id']}/test")
    delivery = test.json()["id"]
    operator = await add_user(services, partner_id=None, operator=True)
    async with browser_for(settings, services) as ops:
        assert (await ops.sign_in(operator.email)).status_code == 303
        key = partner.sandbox.credential.api_key
        base = signed_in.url()
        partner_forms = [
            (f"{base}/webhooks", {"url": "https://example.com/h", "enabled": "on"}),
            (f"{base}/webhooks/{endpoint['id']}", {"url": "https://example.com/x"}),
            (f"{base}/webhooks/{endpoint['id']}/quick", {"url": "https://example.com/y"}),
            (f"{base}/webhooks/{endpoint['id']}/rotate", {}),
            (f"{base}/webhooks/{endpoint['id']}/secret", {}),
            (f"{base}/webhooks/{endpoint['id']}/test", {}),
            (f"{base}/webhooks/{endpoint['id']}/recover", {"since": "2000-01-01T00:00"}),
            (f"{base}/webhooks/{endpoint['id']}/delete", {}),
            (f"{base}/webhooks/{endpoint['id']}/deliveries/{delivery}/redeliver", {}),
            (f"{base}/api-keys", {}),
            (f"{base}/api-keys/{key}/revoke", {}),
            (f"{base}/sandbox", {"advance": "P30D"}),
            (
                "/dashboard/account/password",
                {
                    "current_password": PASSWORD,
                    "new_password": "x" * 12,
                    "confirm_password": "x" * 12,
                },
            ),
            ("/dashboard/sign-out", {}),
        ]
        operator_forms = [
            ("/dashboard/operator/partners", {"name": "Sneaky"}),
            (f"/dashboard/operator/partners/{partner.code}/suspend", {}),
            ("/dashboard/operator/products", {"document": "products: []"}),
        ]
        before = await snapshot(services, partner.id)
        for path, data in partner_forms:
            for token in (None, "forged-token"):
                fields = dict(data)
                if token:
                    fields["csrf_token"] = token
                response = await signed_in.browser.client.post(path, data=fields)
                assert response.status_code == 403, path
        for path, data in operator_forms:
            response = await ops.post(path, data, csrf=False)
            assert response.status_code == 403, path
        assert await snapshot(services, partner.id) == before
        # The session survived the refused sign-out; the booking is still there.
        page = await signed_in.browser.get(signed_in.url(f"bookings/{booking['id']}"))
        assert page.status_code == 200


async def test_a_session_token_does_not_pass_as_another_sessions_csrf_token(
    signed_in: SignedIn, services: Services, settings: Settings
) -> None:
    other_user = await add_user(services, partner_id=signed_in.partner.id)
    async with browser_for(settings, services) as other:
        await other.sign_in(other_user.email)
        before = await snapshot(services, signed_in.partner.id)
        response = await signed_in.browser.client.post(
            signed_in.url("api-keys"), data={"csrf_token": other.csrf}
        )
        assert response.status_code == 403
        assert await snapshot(services, signed_in.partner.id) == before


# ------------------------------------------------------------------------------ operators


async def test_operators_see_every_partner(
    browser: Browser, partner: PartnerFixture, other_partner: PartnerFixture, services: Services
) -> None:
    operator = await add_user(services, partner_id=None, operator=True)
    await browser.sign_in(operator.email)
    for code in (partner.code, other_partner.code):
        assert (await browser.get(f"/dashboard/{code}/live/bookings")).status_code == 200
    switched = await browser.get("/dashboard/switch", partner=other_partner.code, mode="live")
    assert switched.headers["location"] == f"/dashboard/{other_partner.code}/live"


# ------------------------------------------------------------------------------ output


async def test_a_script_as_a_policyholder_name_renders_as_text(signed_in: SignedIn) -> None:
    booking = await book(signed_in.partner, first_name=XSS, last_name=XSS)
    for path in ("bookings", f"bookings/{booking['id']}", f"bookings?q={XSS}"):
        page = await signed_in.browser.get(signed_in.url(path))
        assert page.status_code == 200
        assert XSS not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_emails_are_unique_whatever_their_case_and_must_be_valid(
    partner: PartnerFixture, services: Services
) -> None:
    await add_user(services, partner_id=partner.id, email="Case@Example.com")
    with pytest.raises(Conflict):
        await add_user(services, partner_id=partner.id, email="case@EXAMPLE.com")
    with pytest.raises(ValidationFailed):
        await add_user(services, partner_id=partner.id, email="not-an-email")
    with pytest.raises(ValidationFailed):
        await add_user(services, partner_id=partner.id, password="short")
