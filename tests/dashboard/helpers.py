"""Dashboard clients for in-process tests: a cookie jar per browser, signing in, forms with
or without the CSRF token."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from coverline.app import create_app
from coverline.config import Settings
from coverline.dashboard.auth import create_user
from coverline.dashboard.models import DashboardUser
from coverline.partners.models import Partner
from coverline.runtime import Services

PASSWORD = "a-long-test-password"
CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
_users = itertools.count(1)


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match is not None, "no CSRF field on the page"
    return match.group(1)


async def add_user(
    services: Services,
    *,
    partner_id: int | None,
    operator: bool = False,
    password: str = PASSWORD,
    email: str | None = None,
) -> DashboardUser:
    address = email or f"user{next(_users)}@example.com"
    async with services.database.transaction() as session:
        partner = await session.get(Partner, partner_id) if partner_id is not None else None
        return await create_user(
            session,
            email=address,
            password=password,
            partner=partner,
            is_operator=operator,
            now=services.clock.now(),
        )


async def user_row(services: Services, email: str) -> DashboardUser:
    async with services.database.reading() as session:
        user = await session.scalar(select(DashboardUser).where(DashboardUser.email == email))
    assert user is not None
    return user


class Browser:
    """One browser: its own cookies, following no redirects by itself."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        page = await self.client.get("/dashboard/sign-in")
        response = await self.client.post(
            "/dashboard/sign-in",
            data={"csrf_token": csrf_of(page.text), "email": email, "password": password},
        )
        if response.status_code == 303:
            landing = await self.client.get(response.headers["location"])
            if landing.status_code == 303:
                landing = await self.client.get(landing.headers["location"])
            self.csrf = csrf_of(landing.text)
        return response

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params or None)

    async def post(
        self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True
    ) -> httpx.Response:
        fields = dict(data or {})
        if csrf:
            fields["csrf_token"] = self.csrf
        return await self.client.post(path, data=fields)


BrowserFactory = Callable[..., Any]


@asynccontextmanager
async def browser_for(
    settings: Settings, services: Services, base_url: str = "https://cover.test"
) -> AsyncIterator[Browser]:
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield Browser(client)
