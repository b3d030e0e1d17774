"""What the dispatcher signs with, when it changes under it: an endpoint with nothing to sign
with fails on its own (the others go on), and a rotated secret stops signing when its overlap
ends, however long the endpoint's config has been kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from coverline.partners.models import Partner
from coverline.partners.service import revoke_credential
from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher
from coverline.webhooks.models import WebhookAttempt, WebhookEndpoint
from tests.conftest import PartnerFixture
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Receiver, running_receiver
from tests.fixtures.webhooks import add_endpoint, delivery_statuses, running_dispatcher


async def book(partner: PartnerFixture) -> None:
    response = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    assert response.status_code == 200, response.text


async def test_an_endpoint_with_nothing_to_sign_with_holds_up_no_other(
    services: Services, partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    """MyCover's scheme signs with the partner's secret API key: with its last key revoked,
    its deliveries fail (logged, retried) while another partner's go out."""
    async with running_receiver() as unsigned, running_receiver() as other:
        await add_endpoint(partner.sandbox, unsigned.url, format="mycover", retry_schedule=[60])
        await book(partner)
        async with services.database.transaction() as session:
            owner = await session.get(Partner, partner.id)
            assert owner is not None
            await revoke_credential(
                session, owner, partner.sandbox.credential.api_key, services.clock.now()
            )
        await add_endpoint(other_partner.sandbox, other.url)
        async with running_dispatcher(services):
            await book(other_partner)
            await other.wait_for(1)
            for _ in range(200):
                async with services.database.reading() as session:
                    errors = list(await session.scalars(select(WebhookAttempt.error)))
                if errors.count("Cannot sign: The partner has no active API key.") == 1:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError(f"no attempt logged: {errors}")
        assert unsigned.received == []
        assert await delivery_statuses(services, other_partner) == {"succeeded": 1}
        assert await delivery_statuses(services, partner) == {"pending": 1}


async def test_the_previous_secret_stops_signing_when_its_overlap_ends(
    services: Services, partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, signature="standard")
    old_secret = endpoint["secret"]
    rotated = await partner.sandbox.call("POST", f"webhooks/{endpoint['id']}/rotate_secret", {})
    new_secret = rotated.json()["secret"]
    # An overlap that ends in a second and a half, as a day's would, without the endpoint's
    # row changing when it ends: the dispatcher keeps the config it builds now.
    ends = datetime.now(UTC) + timedelta(seconds=1.5)
    async with services.database.transaction() as session:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.public_id == endpoint["id"])
            .values(previous_secret_expires_at=ends)
            .execution_options(synchronize_session=False)
        )
    await book(partner)
    (first,) = await receiver.wait_for(1)
    assert len(first.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old_secret).verify(first.body, first.headers)
    await asyncio.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.1)
    await book(partner)
    _, second = await receiver.wait_for(2)
    assert len(second.headers["webhook-signature"].split(" ")) == 1
    assert Webhook(new_secret).verify(second.body, second.headers)
    try:
        Webhook(old_secret).verify(second.body, second.headers)
    except WebhookVerificationError:
        pass
    else:
        raise AssertionError("the old secret still verifies after its overlap")
