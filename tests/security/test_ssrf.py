"""Webhooks never reach into the operator's network (SSRF).

Every class of forbidden target is refused twice: when an endpoint is saved through the API
or the dashboard (422, nothing stored), and by the dispatcher when it connects (the attempt
is logged as refused and no request reaches a receiver), unless
COVERLINE_WEBHOOKS_ALLOW_PRIVATE_NETWORKS is true. Redirects are never followed. The network
fence keeps every test here on this machine whatever the code under test does.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import update

from coverline.config import Settings
from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher, DispatchSettings
from coverline.webhooks.models import WebhookDelivery, WebhookEndpoint
from coverline.webhooks.network import (
    PRIVATE_LITERAL,
    PRIVATE_NAME,
    ForbiddenAddress,
    GuardedResolver,
    ResolverFactory,
    is_forbidden,
    literal_address,
)
from tests.conftest import PartnerFixture, partner_state
from tests.dashboard.helpers import add_user, browser_for
from tests.fixtures.receiver import Answer, Receiver, running_receiver
from tests.fixtures.webhooks import add_endpoint
from tests.security.conftest import NetworkFence, ZoneResolver
from tests.webhooks.test_delivery import settle

PUBLIC = "93.184.216.34"
ZONE = {
    "hooks.partner.test": [PUBLIC],
    "internal.partner.test": ["10.0.0.8"],
    "metadata.partner.test": ["169.254.169.254"],
    "ula.partner.test": ["fd00::8"],
    "rebind.partner.test": [PUBLIC, "127.0.0.1"],
}

# (host as written in a URL, the address Coverline reads it as)
FORBIDDEN_HOSTS = [
    pytest.param("10.0.0.8", "10.0.0.8", id="private 10/8"),
    pytest.param("172.16.5.4", "172.16.5.4", id="private 172.16/12"),
    pytest.param("192.168.1.1", "192.168.1.1", id="private 192.168/16"),
    pytest.param("127.0.0.1", "127.0.0.1", id="loopback"),
    pytest.param("127.8.9.10", "127.8.9.10", id="loopback 127/8"),
    pytest.param("169.254.169.254", "169.254.169.254", id="link-local metadata"),
    pytest.param("100.64.0.1", "100.64.0.1", id="CGNAT 100.64/10"),
    pytest.param("224.0.0.251", "224.0.0.251", id="multicast"),
    pytest.param("0.0.0.0", "0.0.0.0", id="unspecified"),
    pytest.param("255.255.255.255", "255.255.255.255", id="broadcast"),
    pytest.param("192.0.0.8", "192.0.0.8", id="IETF protocol 192.0.0/24"),
    pytest.param("[::1]", "::1", id="IPv6 loopback"),
    pytest.param("[::]", "::", id="IPv6 unspecified"),
    pytest.param("[fd12:3456::1]", "fd12:3456::1", id="IPv6 ULA"),
    pytest.param("[fe80::1]", "fe80::1", id="IPv6 link-local"),
    pytest.param("[fec0::1]", "fec0::1", id="IPv6 site-local"),
    pytest.param("[ff02::1]", "ff02::1", id="IPv6 multicast"),
    pytest.param("[::ffff:10.0.0.1]", "::ffff:a00:1", id="IPv4-mapped private"),
    pytest.param("[::ffff:127.0.0.1]", "::ffff:7f00:1", id="IPv4-mapped loopback"),
    pytest.param("[64:ff9b::a00:1]", "64:ff9b::a00:1", id="NAT64 of 10.0.0.1"),
    pytest.param("[2002:a9fe:a9fe::]", "2002:a9fe:a9fe::", id="6to4 of 169.254.169.254"),
    pytest.param("2130706433", "127.0.0.1", id="decimal 127.0.0.1"),
    pytest.param("0177.0.0.1", "127.0.0.1", id="octal 127.0.0.1"),
    pytest.param("0x7f.1", "127.0.0.1", id="hex 127.0.0.1"),
    pytest.param("127.1", "127.0.0.1", id="short 127.0.0.1"),
]
FORBIDDEN_NAMES = [
    pytest.param("localhost", id="localhost (/etc/hosts)"),
    pytest.param("LOCALHOST", id="localhost upper case"),
    pytest.param("internal.partner.test", id="name of 10.0.0.8"),
    pytest.param("metadata.partner.test", id="name of 169.254.169.254"),
    pytest.param("ula.partner.test", id="name of an IPv6 ULA"),
    pytest.param("rebind.partner.test", id="name of a public and a loopback address"),
]


@pytest.fixture
def zone() -> ZoneResolver:
    return ZoneResolver(ZONE)


@pytest.fixture
def strict_api(services: Services, zone: ZoneResolver, monkeypatch: pytest.MonkeyPatch) -> Services:
    """The session's application with private networks refused and names resolved by the
    test's zone (and /etc/hosts)."""
    monkeypatch.setattr(services.settings, "webhooks_allow_private_networks", False)
    monkeypatch.setattr(services, "webhook_resolver", zone)
    return services


# ---------------------------------------------------------------------- address classes


@pytest.mark.parametrize(("host", "address"), FORBIDDEN_HOSTS)
def test_every_forbidden_class_is_forbidden(host: str, address: str) -> None:
    assert literal_address(host) == address
    assert is_forbidden(address) is True


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        PUBLIC,
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_forbidden(address) is False


def test_host_names_are_not_literals() -> None:
    for name in ("localhost", "hooks.partner.test", "dead.beef", "1.2.3.4.nip.io", "0x7g.1"):
        assert literal_address(name) is None, name


async def test_the_resolver_refuses_names_of_forbidden_addresses(zone: ZoneResolver) -> None:
    strict = GuardedResolver(allow_private=False, inner=zone)
    assert [r["host"] for r in await strict.resolve("hooks.partner.test", 443)] == [PUBLIC]
    for name, message in (
        ("localhost", "localhost resolves only to private or reserved addresses"),
        (
            "internal.partner.test",
            "internal.partner.test resolves only to private or reserved addresses",
        ),
        ("rebind.partner.test", "rebind.partner.test resolves to private or reserved addresses"),
    ):
        with pytest.raises(ForbiddenAddress) as refused:
            await strict.resolve(name, 80, socket.AF_INET)
        assert str(refused.value) == message
    allowing = GuardedResolver(allow_private=True, inner=zone)
    assert [r["host"] for r in await allowing.resolve("localhost", 80, socket.AF_INET)] == [
        "127.0.0.1"
    ]
    assert [r["host"] for r in await allowing.resolve("rebind.partner.test", 80)] == [
        PUBLIC,
        "127.0.0.1",
    ]


# ---------------------------------------------------------------------- when saved


async def _refused_when_saved(
    services: Services, partner: PartnerFixture, url: str, message: str
) -> None:
    existing = await add_endpoint(partner.sandbox, f"https://{PUBLIC}/hooks")
    before = await partner_state(services, partner.id)
    created = await partner.sandbox.call("POST", "webhooks/", {"url": url})
    changed = await partner.sandbox.call("PATCH", f"webhooks/{existing['id']}/", {"url": url})
    for response in (created, changed):
        assert response.status_code == 422, response.text
        assert response.json() == {
            "type": "validation_error",
            "message": "An API error occurred.",
            "errors": {"url": [message]},
        }
    assert await partner_state(services, partner.id) == before


@pytest.mark.parametrize(("host", "address"), FORBIDDEN_HOSTS)
async def test_forbidden_addresses_are_refused_when_saved(
    strict_api: Services, partner: PartnerFixture, fence: NetworkFence, host: str, address: str
) -> None:
    await _refused_when_saved(strict_api, partner, f"http://{host}:8080/hooks", PRIVATE_LITERAL)
    assert fence.looked_up_for(8080) == [] and fence.connected_to(8080) == []


@pytest.mark.parametrize("name", FORBIDDEN_NAMES)
async def test_names_of_forbidden_addresses_are_refused_when_saved(
    strict_api: Services, partner: PartnerFixture, fence: NetworkFence, name: str
) -> None:
    await _refused_when_saved(strict_api, partner, f"https://{name}:8443/hooks", PRIVATE_NAME)
    assert fence.connected_to(8443) == []


async def test_public_names_and_names_that_do_not_resolve_yet_are_saved(
    strict_api: Services, partner: PartnerFixture, fence: NetworkFence
) -> None:
    for url in ("https://hooks.partner.test/coverline", "https://not-yet.partner.test/hooks"):
        response = await partner.sandbox.call("POST", "webhooks/", {"url": url})
        assert response.status_code == 201, response.text
        assert response.json()["url"] == url
    # The second name went to the system's resolver, which the fence keeps off the network.
    assert fence.looked_up_for(443) == ["not-yet.partner.test"]
    assert fence.connected_to(443) == []


async def test_every_forbidden_target_is_saved_when_private_networks_are_allowed(
    partner: PartnerFixture, settings: Settings, fence: NetworkFence
) -> None:
    assert settings.webhooks_allow_private_networks is True
    hosts = [str(p.values[0]) for p in FORBIDDEN_HOSTS] + [
        str(p.values[0]) for p in FORBIDDEN_NAMES
    ]
    for host in hosts:
        response = await partner.sandbox.call(
            "POST", "webhooks/", {"url": f"http://{host}:8080/hooks", "enabled": False}
        )
        assert response.status_code == 201, (host, response.text)
    listed = await partner.sandbox.call("GET", "webhooks/")
    assert listed.json()["count"] == len(hosts)
    assert fence.looked_up_for(8080) == [] and fence.connected_to(8080) == []


async def test_the_dashboard_refuses_forbidden_targets_too(
    strict_api: Services, partner: PartnerFixture, settings: Settings, fence: NetworkFence
) -> None:
    existing = await add_endpoint(partner.sandbox, f"https://{PUBLIC}/hooks")
    user = await add_user(strict_api, partner_id=partner.id)
    async with browser_for(settings, strict_api) as browser:
        await browser.sign_in(user.email)
        base = f"/dashboard/{partner.code}/sandbox/webhooks"
        before = await partner_state(strict_api, partner.id)
        for url, message in (
            ("http://169.254.169.254/latest/meta-data", PRIVATE_LITERAL),
            ("http://2130706433/hooks", PRIVATE_LITERAL),
            ("http://localhost:8080/hooks", PRIVATE_NAME),
            ("https://internal.partner.test/hooks", PRIVATE_NAME),
        ):
            for path, fields in (
                (base, {"url": url, "enabled": "on", "format": "xcover"}),
                (f"{base}/{existing['id']}/quick", {"url": url, "enabled": "on"}),
                (
                    f"{base}/{existing['id']}",
                    {"url": url, "enabled": "on", "format": "xcover", "signature": "xcover"},
                ),
            ):
                page = await browser.post(path, fields)
                assert page.status_code == 422, (path, url)
                assert message in page.text, (path, url)
        assert await partner_state(strict_api, partner.id) == before
    assert fence.connected_to(8080) == [] and fence.connected_to(443) == []


# ---------------------------------------------------------------------- when sent


@pytest.fixture
async def ipv6_receiver() -> AsyncIterator[Receiver]:
    async with running_receiver(host="::1") as running:
        yield running


async def _dispatch_until_done(
    services: Services,
    *,
    allow_private: bool,
    resolver: ResolverFactory,
    partner: PartnerFixture,
    endpoints: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    settings = DispatchSettings(allow_private_networks=allow_private, poll_seconds=0.01)
    async with Dispatcher(
        services.database, services.box, services.clock, settings, resolver=resolver
    ) as running:
        stop = asyncio.Event()
        task = asyncio.create_task(running.run(stop))
        try:
            done = [await settle(partner, endpoint, "failed") for endpoint in endpoints]
        finally:
            stop.set()
            await task
    return done


async def _test_event(partner: PartnerFixture, endpoint: dict[str, Any]) -> None:
    response = await partner.sandbox.call("POST", f"webhooks/{endpoint['id']}/test")
    assert response.status_code == 202, response.text


async def test_the_dispatcher_refuses_every_forbidden_target_at_connect_time(
    services: Services,
    partner: PartnerFixture,
    receiver: Receiver,
    ipv6_receiver: Receiver,
    zone: ZoneResolver,
    fence: NetworkFence,
) -> None:
    """Endpoints saved while private networks were allowed (or written by an older version,
    for the raw spellings), then sent to with them refused."""
    port = urlsplit(receiver.url).port
    port6 = urlsplit(ipv6_receiver.url).port
    assert port is not None and port6 is not None
    refused = "Refused: {} is a private or reserved address."
    only = "Refused: {} resolves only to private or reserved addresses."
    # URL → the error its attempt records; the first ones would reach a receiver.
    reaching = {
        f"http://127.0.0.1:{port}/hooks": refused.format("127.0.0.1"),
        f"http://localhost:{port}/hooks": only.format("localhost"),
        f"http://[::ffff:127.0.0.1]:{port}/hooks": refused.format("::ffff:7f00:1"),
        f"http://[::1]:{port6}/hooks": refused.format("::1"),
    }
    raw = {
        f"http://2130706433:{port}/hooks": refused.format("127.0.0.1"),
        f"http://0177.0.0.1:{port}/hooks": refused.format("127.0.0.1"),
    }
    elsewhere = {
        f"http://{address}:{port}/hooks": refused.format(shown)
        for address, shown in (
            ("10.0.0.8", "10.0.0.8"),
            ("169.254.169.254", "169.254.169.254"),
            ("100.64.0.1", "100.64.0.1"),
            ("224.0.0.251", "224.0.0.251"),
            ("255.255.255.255", "255.255.255.255"),
            ("0.0.0.0", "0.0.0.0"),
            ("[fd12:3456::1]", "fd12:3456::1"),
            ("[fe80::1]", "fe80::1"),
            ("[ff02::1]", "ff02::1"),
            ("[64:ff9b::a00:8]", "64:ff9b::a00:8"),
        )
    }
    elsewhere[f"http://internal.partner.test:{port}/hooks"] = only.format("internal.partner.test")
    elsewhere[f"http://rebind.partner.test:{port}/hooks"] = (
        "Refused: rebind.partner.test resolves to private or reserved addresses."
    )
    expected = {**reaching, **raw, **elsewhere}
    endpoints = []
    for url in [*reaching, *elsewhere, *raw]:
        saved_url = url if url not in raw else f"http://127.0.0.1:{port}/hooks"
        endpoint = await add_endpoint(partner.sandbox, saved_url, retry_schedule=[])
        if url in raw:
            async with services.database.transaction() as session:
                await session.execute(
                    update(WebhookEndpoint)
                    .where(WebhookEndpoint.public_id == endpoint["id"])
                    .values(url=url)
                )
        endpoints.append({**endpoint, "url": url})
        await _test_event(partner, endpoint)
    try:
        done = await _dispatch_until_done(
            services, allow_private=False, resolver=zone, partner=partner, endpoints=endpoints
        )
    finally:
        await _fail_pending(services, partner)
    for endpoint, delivery in zip(endpoints, done, strict=True):
        assert [(a["status_code"], a["error"]) for a in delivery["attempts_log"]] == [
            (None, expected[endpoint["url"]])
        ], endpoint["url"]
    assert receiver.received == [] and ipv6_receiver.received == []
    assert fence.connected_to(port) == [] and fence.connected_to(port6) == []


async def test_the_same_targets_are_reached_when_private_networks_are_allowed(
    services: Services,
    partner: PartnerFixture,
    receiver: Receiver,
    ipv6_receiver: Receiver,
    fence: NetworkFence,
) -> None:
    """The control of the test above: its receivers do answer, so the refusal is what kept
    them from receiving."""
    port = urlsplit(receiver.url).port
    urls = [
        receiver.url,
        f"http://localhost:{port}/hooks",
        f"http://[::ffff:127.0.0.1]:{port}/hooks",
        ipv6_receiver.url,
    ]
    endpoints = [await add_endpoint(partner.sandbox, url, retry_schedule=[]) for url in urls]
    for endpoint in endpoints:
        await _test_event(partner, endpoint)
    receiver.default = Answer(status=500)
    ipv6_receiver.default = Answer(status=500)
    done = await _dispatch_until_done(
        services,
        allow_private=True,
        resolver=ZoneResolver({}),
        partner=partner,
        endpoints=endpoints,
    )
    assert [d["attempts_log"][0]["status_code"] for d in done] == [500, 500, 500, 500]
    assert len(receiver.received) == 3 and len(ipv6_receiver.received) == 1


async def _fail_pending(services: Services, partner: PartnerFixture) -> None:
    """Nothing of this test is left for a later test's dispatcher to send."""
    async with services.database.transaction() as session:
        await session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.partner_id == partner.id,
                WebhookDelivery.status.in_(("pending", "delivering")),
            )
            .values(status="failed", lease_expires_at=None, leased_by=None)
        )


# ---------------------------------------------------------------------- redirects


@pytest.fixture
async def second_receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_failures_and_never_followed(
    partner: PartnerFixture,
    receiver: Receiver,
    second_receiver: Receiver,
    dispatcher: Dispatcher,
    status: int,
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, retry_schedule=[])
    receiver.answer(Answer(status=status, headers={"Location": second_receiver.url}))
    await _test_event(partner, endpoint)
    detail = await settle(partner, endpoint, "failed")
    assert [(a["status_code"], a["error"]) for a in detail["attempts_log"]] == [
        (status, f"Redirect to '{second_receiver.url}' not followed.")
    ]
    assert detail["last_status_code"] == status
    assert len(receiver.received) == 1
    assert second_receiver.received == []
