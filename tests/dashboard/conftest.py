from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from coverline.config import Settings
from coverline.dashboard.models import DashboardUser
from coverline.runtime import Services
from tests.conftest import PartnerFixture
from tests.dashboard.helpers import Browser, add_user, browser_for


@pytest.fixture
async def browser(settings: Settings, services: Services) -> AsyncIterator[Browser]:
    async with browser_for(settings, services) as opened:
        yield opened


@dataclass
class SignedIn:
    browser: Browser
    partner: PartnerFixture
    user: DashboardUser

    def url(self, relative: str = "", mode: str = "sandbox") -> str:
        path = f"/dashboard/{self.partner.code}/{mode}"
        return f"{path}/{relative}" if relative else path


@pytest.fixture
async def signed_in(browser: Browser, partner: PartnerFixture, services: Services) -> SignedIn:
    user = await add_user(services, partner_id=partner.id)
    response = await browser.sign_in(user.email)
    assert response.status_code == 303, response.text
    return SignedIn(browser, partner, user)
