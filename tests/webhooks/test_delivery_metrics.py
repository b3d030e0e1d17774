"""What the dispatcher records beside the attempt rows: counters by outcome, latency
histograms, and the request id of the event on every attempt."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from coverline.events.models import Event
from coverline.runtime import Services
from coverline.webhooks.dispatcher import Dispatcher
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.conftest import PartnerFixture
from tests.fixtures.metrics import Samples, scrape
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Answer, Receiver
from tests.fixtures.webhooks import add_endpoint
from tests.webhooks.test_delivery import settle

ATTEMPTS = "coverline_webhook_attempts_total"
LAG = "coverline_webhook_delivery_lag_seconds"
DURATION = "coverline_webhook_attempt_duration_seconds"


def attempts_counted(after: Samples, before: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["format"], dict(labels)["outcome"]): change
        for (name, labels), change in after.minus(before).items()
        if name == ATTEMPTS
    }


def histogram_counts(after: Samples, before: Samples, name: str) -> dict[str, float]:
    return {
        dict(labels)["format"]: change
        for (sample, labels), change in after.minus(before).items()
        if sample == f"{name}_count"
    }


async def test_a_500_then_a_200_counts_one_retry_and_one_success(
    http: httpx.AsyncClient,
    services: Services,
    partner: PartnerFixture,
    receiver: Receiver,
    lone_dispatcher: Dispatcher,
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    receiver.answer(Answer(status=500, body="boom"))
    before = await scrape(http)
    booked = await partner.sandbox.call(
        "POST", "instant_booking/", instant_booking_request(), headers={"X-Request-Id": "ord-7"}
    )
    assert booked.status_code == 200
    assert booked.headers["x-request-id"] == "ord-7"
    await receiver.wait_for(2)
    detail = await settle(partner, endpoint, "succeeded")
    after = await scrape(http)

    assert attempts_counted(after, before) == {("xcover", "retry"): 1, ("xcover", "succeeded"): 1}
    assert histogram_counts(after, before, DURATION) == {"xcover": 2}
    # Only the first attempt measures the time since the event's commit.
    assert histogram_counts(after, before, LAG) == {"xcover": 1}

    assert detail["request_id"] == "ord-7"
    assert [a["request_id"] for a in detail["attempts_log"]] == ["ord-7", "ord-7"]
    async with services.database.reading() as session:
        event = await session.scalar(select(Event).where(Event.resource_id == booked.json()["id"]))
        attempts = list(
            await session.scalars(
                select(WebhookAttempt.request_id)
                .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
                .where(WebhookDelivery.public_id == detail["id"])
            )
        )
    assert event is not None and event.request_id == "ord-7"
    assert attempts == ["ord-7", "ord-7"]


async def test_a_delivery_that_fails_for_good_counts_as_failed(
    http: httpx.AsyncClient,
    partner: PartnerFixture,
    receiver: Receiver,
    lone_dispatcher: Dispatcher,
) -> None:
    endpoint = await add_endpoint(
        partner.sandbox, receiver.url, format="mycover", signature="mycover", retry_schedule=[]
    )
    receiver.answer(Answer(status=500))
    before = await scrape(http)
    booked = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    assert booked.status_code == 200
    detail = await settle(partner, endpoint, "failed")
    after = await scrape(http)
    assert attempts_counted(after, before) == {("mycover", "failed"): 1}
    assert histogram_counts(after, before, LAG) == {"mycover": 1}
    # A generated id: 32 hex digits, the same on the response, the event and the attempt.
    request_id = booked.headers["x-request-id"]
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    assert detail["attempts_log"][0]["request_id"] == request_id
