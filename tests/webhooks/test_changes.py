"""A change to an endpoint (its URL, its signing secret) applies to every delivery claimed
after the change commits, also while the worker is busy with that endpoint and has not polled
since: each turn reads the endpoints' versions after its claims."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher, DispatchSettings
from coverline.webhooks.models import WebhookEndpoint
from tests.conftest import PartnerFixture
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Answer, Receiver, running_receiver
from tests.fixtures.webhooks import add_endpoint, delivery_statuses, running_dispatcher

# No poll during the test: the claims come from the wake-ups of the bookings alone, so a
# configuration the worker held from before the change would be used.
QUIET = DispatchSettings(
    allow_private_networks=True, poll_seconds=60.0, idle_poll_seconds=60.0, default_timeout=5
)


async def instant(partner: PartnerFixture) -> str:
    response = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    assert response.status_code == 200
    return str(response.json()["id"])


async def test_a_new_url_applies_to_the_next_delivery_while_the_old_one_is_in_flight(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    # The first answer takes a second: the worker holds the endpoint's queue meanwhile.
    receiver.answer(Answer(delay=1.0))
    async with running_receiver() as moved, running_dispatcher(services, QUIET):
        first = await instant(partner)
        (sending,) = await receiver.wait_for(1)
        changed = await partner.sandbox.call(
            "PATCH", f"webhooks/{endpoint['id']}/", {"url": moved.url}
        )
        assert changed.status_code == 200, changed.text
        second = await instant(partner)
        (arrived,) = await moved.wait_for(1)
        await asyncio.sleep(1.2)
    assert sending.json()["payload"]["id"] == first
    assert arrived.json()["payload"]["id"] == second
    # The old URL got the first delivery alone.
    assert len(receiver.received) == 1
    assert len(moved.received) == 1


async def test_a_rotated_secret_signs_the_next_delivery_while_the_old_one_is_in_flight(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, signature="standard")
    old_secret = endpoint["secret"]
    receiver.answer(Answer(delay=1.0))
    async with running_dispatcher(services, QUIET):
        await instant(partner)
        await receiver.wait_for(1)
        rotated = await partner.sandbox.call("POST", f"webhooks/{endpoint['id']}/rotate_secret", {})
        assert rotated.status_code == 200
        new_secret = rotated.json()["secret"]
        await instant(partner)
        first, second = await receiver.wait_for(2)
    assert len(first.headers["webhook-signature"].split(" ")) == 1
    assert Webhook(old_secret).verify(first.body, first.headers)
    # Both secrets sign for the overlap.
    assert len(second.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new_secret).verify(second.body, second.headers)
    assert Webhook(old_secret).verify(second.body, second.headers)


@pytest.mark.postgresql
async def test_a_change_committed_during_a_turn_applies_to_what_the_turn_claims(
    services: Services, partner: PartnerFixture, receiver: Receiver, monkeypatch: Any
) -> None:
    """On PostgreSQL each statement of a turn sees what committed before it: a PATCH that
    commits after the turn began and before its claim is what the claimed delivery is sent
    under (the versions are read after the claims)."""
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    async with services.database.reading() as session:
        endpoint_id = (
            await session.execute(
                select(WebhookEndpoint.id).where(WebhookEndpoint.public_id == endpoint["id"])
            )
        ).scalar_one()
    receiver.answer(Answer(delay=1.0))
    claim_endpoint = Dispatcher._claim_endpoint
    async with running_receiver() as moved:
        armed = asyncio.Event()

        async def patched_first(
            self: Dispatcher, connection: Any, claimed_for: int, *args: Any
        ) -> Any:
            # Once the second delivery waits, the PATCH commits in the turn about to claim it.
            if (
                armed.is_set()
                and claimed_for == endpoint_id
                and (await delivery_statuses(services, partner)).get("pending")
            ):
                armed.clear()
                changed = await partner.sandbox.call(
                    "PATCH", f"webhooks/{endpoint['id']}/", {"url": moved.url}
                )
                assert changed.status_code == 200, changed.text
            return await claim_endpoint(self, connection, claimed_for, *args)

        monkeypatch.setattr(Dispatcher, "_claim_endpoint", patched_first)
        async with running_dispatcher(services, QUIET):
            await instant(partner)
            await receiver.wait_for(1)
            armed.set()
            second = await instant(partner)
            (arrived,) = await moved.wait_for(1)
            assert not armed.is_set()
            await asyncio.sleep(1.2)
    assert arrived.json()["payload"]["id"] == second
    assert len(receiver.received) == 1


async def test_an_endpoint_enabled_again_while_its_old_send_is_under_way_is_woken(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    path = f"webhooks/{endpoint['id']}/"
    receiver.answer(Answer(delay=1.5))
    async with running_dispatcher(services, QUIET) as dispatcher:
        await instant(partner)
        await receiver.wait_for(1)
        # Disabled while that first send waits for its answer; a search retires its queue.
        assert (await partner.sandbox.call("PATCH", path, {"enabled": False})).status_code == 200
        dispatcher.wake(set())
        await asyncio.sleep(0.2)
        assert (await partner.sandbox.call("PATCH", path, {"enabled": True})).status_code == 200
        second = await instant(partner)
        _, arrived = await receiver.wait_for(2, timeout=1.0)
    assert arrived.json()["payload"]["id"] == second
