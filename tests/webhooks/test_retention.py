"""Retention of the attempt log: housekeeping deletes what is older than
`webhook_attempt_retention_days`, finished deliveries with their bodies and attempts, and
keeps every delivery still to go."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from coverline.runtime import Services
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookDeliveryBody
from coverline.worker import Worker
from tests.conftest import PartnerFixture
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Receiver
from tests.fixtures.webhooks import add_endpoint, running_dispatcher


async def _book(partner: PartnerFixture) -> None:
    response = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    assert response.status_code == 200, response.text


async def _deliveries(services: Services, partner: PartnerFixture) -> list[dict[str, Any]]:
    """Each of the partner's deliveries: its status, whether its body is stored, and how many
    attempts it has, oldest first."""
    attempts = (
        select(func.count())
        .where(WebhookAttempt.delivery_id == WebhookDelivery.id)
        .scalar_subquery()
    )
    async with services.database.reading() as session:
        rows = await session.execute(
            select(
                WebhookDelivery.public_id,
                WebhookDelivery.status,
                WebhookDeliveryBody.body.is_not(None),
                attempts,
            )
            .outerjoin(
                WebhookDeliveryBody,
                WebhookDeliveryBody.delivery_public_id == WebhookDelivery.public_id,
            )
            .where(WebhookDelivery.partner_id == partner.id)
            .order_by(WebhookDelivery.id)
        )
        return [
            {"id": public_id, "status": status, "body": bool(body), "attempts": count}
            for public_id, status, body, count in rows
        ]


async def test_housekeeping_deletes_what_is_older_than_the_retention_and_keeps_the_rest(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    await add_endpoint(partner.sandbox, receiver.url)
    await _book(partner)
    await _book(partner)
    async with running_dispatcher(services):
        await receiver.wait_for(2)
        for _ in range(200):
            if [d["status"] for d in await _deliveries(services, partner)] == ["succeeded"] * 2:
                break
            await asyncio.sleep(0.02)
    await _book(partner)  # no dispatcher: it stays pending
    old, recent, pending = await _deliveries(services, partner)
    assert [old["status"], recent["status"], pending["status"]] == [
        "succeeded",
        "succeeded",
        "pending",
    ]
    assert old["attempts"] == recent["attempts"] == 1 and pending["attempts"] == 0
    retention = timedelta(days=services.settings.webhook_attempt_retention_days)
    long_ago = services.clock.now() - retention - timedelta(hours=1)
    async with services.database.transaction() as session:
        # The first delivery finished (and was attempted) before the horizon; the pending
        # one was made before it, and is kept however old.
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.public_id == old["id"])
            .values(created_at=long_ago, completed_at=long_ago)
        )
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.public_id == pending["id"])
            .values(created_at=long_ago)
        )
        await session.execute(
            update(WebhookAttempt)
            .where(
                WebhookAttempt.delivery_id.in_(
                    select(WebhookDelivery.id).where(WebhookDelivery.public_id == old["id"])
                )
            )
            .values(attempted_at=long_ago)
        )

    await Worker(services).housekeeping()

    assert await _deliveries(services, partner) == [recent, pending]
    async with services.database.reading() as session:
        orphans = await session.scalar(
            select(func.count())
            .select_from(WebhookDeliveryBody)
            .where(WebhookDeliveryBody.delivery_public_id == old["id"])
        )
    assert orphans == 0
