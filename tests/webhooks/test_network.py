"""Network safety: the addresses the dispatcher refuses to connect to."""

from __future__ import annotations

import asyncio
import socket

import pytest

from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher, DispatchSettings
from coverline.webhooks.network import ForbiddenAddress, GuardedResolver, is_forbidden
from tests.conftest import PartnerFixture
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Receiver
from tests.fixtures.webhooks import add_endpoint
from tests.webhooks.test_delivery import settle


@pytest.mark.parametrize(
    ("address", "forbidden"),
    [
        ("127.0.0.1", True),
        ("10.0.0.8", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.251", True),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("fd12:3456::1", True),
        ("::ffff:10.0.0.1", True),
        ("ff02::1", True),
        ("8.8.8.8", False),
        ("93.184.216.34", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_address_classes(address: str, forbidden: bool) -> None:
    assert is_forbidden(address) is forbidden


async def test_resolver_refuses_names_of_private_addresses() -> None:
    resolver = GuardedResolver(allow_private=False)
    try:
        with pytest.raises(ForbiddenAddress):
            await resolver.resolve("localhost", 80, socket.AF_INET)
    finally:
        await resolver.close()
    allowing = GuardedResolver(allow_private=True)
    try:
        assert (await allowing.resolve("localhost", 80, socket.AF_INET))[0]["host"] == "127.0.0.1"
    finally:
        await allowing.close()


async def test_dispatcher_refuses_at_connect_time(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    """An endpoint saved while private networks were allowed, then sent to with them refused:
    nothing reaches the receiver, by IP literal or by a name resolving to loopback."""
    literal = await add_endpoint(partner.sandbox, receiver.url, retry_schedule=[])
    named = await add_endpoint(
        partner.sandbox, receiver.url.replace("127.0.0.1", "localhost"), retry_schedule=[]
    )
    settings = DispatchSettings(allow_private_networks=False, poll_seconds=0.01)
    async with Dispatcher(services.database, services.box, services.clock, settings) as strict:
        stop = asyncio.Event()
        task = asyncio.create_task(strict.run(stop))
        await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
        by_literal = await settle(partner, literal, "failed")
        by_name = await settle(partner, named, "failed")
        stop.set()
        await task
    assert receiver.received == []
    assert by_literal["attempts_log"][0]["error"] == (
        "Refused: 127.0.0.1 is a private or reserved address."
    )
    assert by_name["attempts_log"][0]["error"] == (
        "Refused: localhost resolves only to private or reserved addresses."
    )
