"""The dashboard's browser defences: a strict Content-Security-Policy (no inline script or
style, no framing), the other security headers on every answer, error pages and redirects
included, and cookies that scripts cannot read, that other sites do not send, and that travel
only over TLS when the dashboard is served over it (or is told it is, behind a proxy)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from coverline.config import Settings
from coverline.dashboard.auth import SESSION_COOKIE, SIGN_IN_COOKIE
from coverline.runtime import Services
from tests.dashboard.helpers import PASSWORD, Browser, add_user, browser_for, csrf_of
from tests.security.tenants import Victim, build_victim, fill
from tests.security.test_isolation import DASHBOARD_MATRIX, OPERATOR_PAGES

POLICY_DIRECTIVES = {
    "default-src": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    "base-uri": "'none'",
    "object-src": "'none'",
}


def assert_strict_headers(response: httpx.Response) -> None:
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives == POLICY_DIRECTIVES, policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == "no-store"


def assert_no_inline_code(html: str) -> None:
    """Nothing the policy would have to allow: scripts and styles come from files only."""
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"<style\b", html)
    assert not re.search(r"<[a-zA-Z][^<>]*\s(style|on[a-z]+)=", html)
    assert not re.search(r"""(href|src|action)=["']\s*javascript:""", html, re.I)
    assert "//cdn" not in html and "https://" not in html.split("<body")[0]


def cookie(response: httpx.Response, name: str) -> dict[str, str]:
    """The attributes of a Set-Cookie, lower-cased: {"value": ..., "httponly": "", ...}."""
    for header, value in response.headers.multi_items():
        if header == "set-cookie" and value.startswith(f"{name}="):
            first, *attributes = value.split(";")
            parsed = {"value": first.split("=", 1)[1]}
            for attribute in attributes:
                key, _, setting = attribute.strip().partition("=")
                parsed[key.lower()] = setting.lower()
            return parsed
    raise AssertionError(f"no Set-Cookie for {name}")


@dataclasses.dataclass
class Signed:
    victim: Victim
    browser: Browser
    operator: Browser


@pytest.fixture(scope="module")
async def signed(
    settings: Settings, services: Services, http: httpx.AsyncClient
) -> AsyncIterator[Signed]:
    victim = await build_victim(services, http)
    user = await add_user(services, partner_id=victim.partner.id)
    operator = await add_user(services, partner_id=None, operator=True)
    async with (
        browser_for(settings, services) as browser,
        browser_for(settings, services) as operator_browser,
    ):
        assert (await browser.sign_in(user.email)).status_code == 303
        assert (await operator_browser.sign_in(operator.email)).status_code == 303
        yield Signed(victim, browser, operator_browser)


PAGES = [route for route in DASHBOARD_MATRIX if route[0] == "GET"]


@pytest.mark.parametrize("route", PAGES, ids=[path for _, path in PAGES])
async def test_every_partner_page_has_the_strict_headers(
    signed: Signed, route: tuple[str, str]
) -> None:
    relative = fill(DASHBOARD_MATRIX[route].path, signed.victim.ids)
    base = f"/dashboard/{signed.victim.partner.code}/sandbox"
    page = await signed.browser.get(f"{base}/{relative}" if relative else base)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert_strict_headers(page)
    assert_no_inline_code(page.text)


async def test_the_other_pages_and_answers_have_them_too(signed: Signed) -> None:
    code = signed.victim.partner.code
    answers: list[tuple[str, httpx.Response]] = [
        ("sign-in page", await signed.browser.get("/dashboard/sign-in")),
        ("account page", await signed.browser.get("/dashboard/account")),
        ("landing redirect", await signed.browser.get("/dashboard/")),
        ("missing page", await signed.browser.get("/dashboard/no-such-page")),
        ("another partner", await signed.browser.get("/dashboard/ZZZZZ/sandbox")),
        ("unknown mode", await signed.browser.get(f"/dashboard/{code}/staging/bookings")),
        (
            "form without CSRF",
            await signed.browser.post(f"/dashboard/{code}/sandbox/api-keys", csrf=False),
        ),
        (
            "form with errors",
            await signed.browser.post(f"/dashboard/{code}/sandbox/webhooks", {"url": "nope"}),
        ),
    ]
    for method, path in OPERATOR_PAGES:
        if method == "GET" and "{" not in path:
            answers.append((path, await signed.operator.get("/dashboard" + path)))
    statuses = {name: response.status_code for name, response in answers}
    assert statuses == {
        "sign-in page": 200,
        "account page": 200,
        "landing redirect": 303,
        "missing page": 404,
        "another partner": 404,
        "unknown mode": 404,
        "form without CSRF": 403,
        "form with errors": 422,
        "/operator/partners": 200,
        "/operator/products": 200,
    }
    for _, response in answers:
        assert_strict_headers(response)
        if response.status_code != 303:
            assert_no_inline_code(response.text)


async def test_the_session_cookie_is_http_only_same_site_and_secure_over_https(
    settings: Settings, services: Services, signed: Signed
) -> None:
    user = await add_user(services, partner_id=signed.victim.partner.id)
    async with browser_for(settings, services) as browser:
        page = await browser.client.get("/dashboard/sign-in")
        sign_in = cookie(page, SIGN_IN_COOKIE)
        assert sign_in["value"] == csrf_of(page.text)
        assert {k: v for k, v in sign_in.items() if k != "value"} == {
            "httponly": "",
            "max-age": "3600",
            "path": "/dashboard",
            "samesite": "lax",
            "secure": "",
        }
        response = await browser.client.post(
            "/dashboard/sign-in",
            data={"csrf_token": sign_in["value"], "email": user.email, "password": PASSWORD},
        )
        assert response.status_code == 303
        session = cookie(response, SESSION_COOKIE)
        assert {k: v for k, v in session.items() if k != "value"} == {
            "httponly": "",
            "max-age": str(int(settings.dashboard_session_hours * 3600)),
            "path": "/dashboard",
            "samesite": "lax",
            "secure": "",
        }
        # The sign-in token is spent: its cookie is cleared.
        assert cookie(response, SIGN_IN_COOKIE)["max-age"] == "0"
        # The session's own CSRF token is no cookie: it is in the pages, never in a header.
        landing = await browser.client.get("/dashboard/account")
        assert "set-cookie" not in landing.headers
        assert csrf_of(landing.text) not in str(browser.client.cookies.jar)


async def test_cookies_are_secure_over_plain_http_only_when_configured(
    settings: Settings, services: Services, signed: Signed
) -> None:
    user = await add_user(services, partner_id=signed.victim.partner.id)
    async with browser_for(settings, services, base_url="http://cover.test") as plain:
        page = await plain.client.get("/dashboard/sign-in")
        assert "secure" not in cookie(page, SIGN_IN_COOKIE)
        response = await plain.sign_in(user.email)
        assert response.status_code == 303
        assert "secure" not in cookie(response, SESSION_COOKIE)
    forced = settings.model_copy(update={"dashboard_secure_cookies": True})
    forced_services = dataclasses.replace(services, settings=forced)
    async with browser_for(forced, forced_services, base_url="http://cover.test") as proxied:
        page = await proxied.client.get("/dashboard/sign-in")
        sign_in = cookie(page, SIGN_IN_COOKIE)
        assert "secure" in sign_in
        # A browser behind the TLS proxy sends the Secure cookie back; httpx on http would not.
        proxied.client.cookies.set(SIGN_IN_COOKIE, sign_in["value"], domain="cover.test")
        response = await proxied.client.post(
            "/dashboard/sign-in",
            data={"csrf_token": sign_in["value"], "email": user.email, "password": PASSWORD},
        )
        assert response.status_code == 303
        assert "secure" in cookie(response, SESSION_COOKIE)
