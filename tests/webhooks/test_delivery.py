"""Delivery semantics at a real receiver: retries, Retry-After, timeouts, 410, ordering, filters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from coverline.runtime import Services
from coverline.webhooks import service
from coverline.webhooks.dispatcher import Dispatcher
from coverline.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookDeliveryBody
from tests.conftest import PartnerFixture
from tests.fixtures.payloads import instant_booking_request, policyholder, quote_request
from tests.fixtures.receiver import Answer, Receiver
from tests.fixtures.webhooks import (
    add_endpoint,
    delivery_statuses,
    running_dispatcher,
    statuses_become,
)


async def instant(partner: PartnerFixture) -> dict[str, Any]:
    response = await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    assert response.status_code == 200
    return dict(response.json())


async def delivery_of(partner: PartnerFixture, endpoint: dict[str, Any], index: int = 0) -> dict:
    listed = await partner.sandbox.call("GET", f"webhooks/{endpoint['id']}/deliveries/")
    deliveries = listed.json()["results"]
    detail = await partner.sandbox.call(
        "GET", f"webhooks/{endpoint['id']}/deliveries/{deliveries[index]['id']}/"
    )
    return dict(detail.json())


async def settle(partner: PartnerFixture, endpoint: dict[str, Any], status: str) -> dict:
    for _ in range(200):
        detail = await delivery_of(partner, endpoint)
        if detail["status"] == status:
            return detail
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery never became {status}: {detail}")


async def test_500_then_200_is_delivered_on_the_retry(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    receiver.answer(Answer(status=500, body="boom"))
    await instant(partner)
    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    detail = await settle(partner, endpoint, "succeeded")
    assert detail["attempts"] == 2
    assert [(a["status_code"], a["response_excerpt"]) for a in detail["attempts_log"]] == [
        (500, "boom"),
        (200, "ok"),
    ]
    assert detail["attempts_log"][0]["request_headers"]["webhook-id"] == detail["id"]


async def test_a_nul_in_an_answer_is_logged_as_a_replacement_and_stops_nothing(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    """PostgreSQL stores no U+0000: a receiver's answer with one is logged with U+FFFD in its
    place (it used to fail the attempt log, and with it every delivery claimed after)."""
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    receiver.answer(Answer(status=500, body="abc\x00def"))
    await instant(partner)
    detail = await settle(partner, endpoint, "succeeded")
    assert [(a["status_code"], a["response_excerpt"]) for a in detail["attempts_log"]] == [
        (500, "abc\ufffddef"),
        (200, "ok"),
    ]
    # The next booking's delivery goes out: nothing is stuck behind the answer.
    await instant(partner)
    first, _, third = await receiver.wait_for(3)
    assert third.headers["webhook-id"] != first.headers["webhook-id"]


async def test_retry_after_in_other_digits_is_ignored_and_the_status_kept(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    """ "²" is a digit to Python's str.isdigit but no number of seconds: the header is
    ignored, as any other it cannot read, and the 429 is logged as such."""
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    receiver.answer(Answer(status=429, headers={"Retry-After": "²"}))
    await instant(partner)
    detail = await settle(partner, endpoint, "succeeded")
    assert [(a["status_code"], a["error"]) for a in detail["attempts_log"]] == [
        (429, None),
        (200, None),
    ]


async def test_four_failures_end_as_failed_after_three_retries(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    receiver.default = Answer(status=503, body="down")
    await instant(partner)
    await receiver.wait_for(4)
    detail = await settle(partner, endpoint, "failed")
    assert detail["attempts"] == 4
    assert [a["status_code"] for a in detail["attempts_log"]] == [503, 503, 503, 503]
    assert detail["last_status_code"] == 503
    await asyncio.sleep(0.6)
    assert len(receiver.received) == 4  # no fifth try


async def test_retry_after_is_honoured(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    # The schedule says 0.2 s; the receiver asks for 2 s.
    await add_endpoint(partner.sandbox, receiver.url)
    receiver.answer(Answer(status=429, headers={"Retry-After": "2"}))
    await instant(partner)
    first, second = await receiver.wait_for(2, timeout=10)
    assert second.at - first.at >= 1.9


async def test_a_timeout_counts_as_a_failure(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, timeout_seconds=0.3)
    receiver.answer(Answer(delay=1.5))
    await instant(partner)
    await receiver.wait_for(2)
    detail = await settle(partner, endpoint, "succeeded")
    first = detail["attempts_log"][0]
    assert first["status_code"] is None
    assert first["error"] == "No response within 0.3 s."
    assert detail["attempts_log"][1]["status_code"] == 200


async def test_410_gone_disables_the_endpoint(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    receiver.answer(Answer(status=410))
    await instant(partner)
    await settle(partner, endpoint, "failed")
    state = (await partner.sandbox.call("GET", f"webhooks/{endpoint['id']}/")).json()
    assert state["enabled"] is False
    assert state["disabled_reason"] == "The endpoint answered 410 Gone."
    await instant(partner)
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 1


async def test_changes_of_one_booking_arrive_in_commit_order_under_retries(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await add_endpoint(partner.sandbox, receiver.url)
    receiver.answer(Answer(status=500), Answer(status=500))
    booking = await instant(partner)
    await partner.sandbox.call(
        "PATCH", f"bookings/{booking['id']}/", {"policyholder": {"phone": "+447911123456"}}
    )
    await partner.sandbox.call(
        "PATCH", f"bookings/{booking['id']}/", {"policyholder": {"first_name": "Marcus"}}
    )
    await receiver.wait_for(5)
    # Two refusals of BOOKING_CREATED hold the updates back; then all three, in order.
    assert receiver.events() == [
        "BOOKING_CREATED",
        "BOOKING_CREATED",
        "BOOKING_CREATED",
        "BOOKING_UPDATED",
        "BOOKING_UPDATED",
    ]
    phones = [r.json()["payload"]["id"] for r in receiver.received]
    assert set(phones) == {booking["id"]}


async def test_other_bookings_flow_while_one_waits(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await add_endpoint(partner.sandbox, receiver.url, retry_schedule=[1.5])
    receiver.answer(Answer(status=500))
    stuck = await instant(partner)
    await receiver.wait_for(1)
    others = [await instant(partner) for _ in range(3)]
    await receiver.wait_for(4, timeout=1.2)  # before the stuck one's retry is due
    ids = [r.json()["payload"]["id"] for r in receiver.received[1:4]]
    assert sorted(ids) == sorted(b["id"] for b in others)
    await receiver.wait_for(5)
    assert receiver.received[4].json()["payload"]["id"] == stuck["id"]


async def test_event_filter_and_mycover_waits_for_payment(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await add_endpoint(partner.sandbox, receiver.url, events=["BOOKING_UPDATED"])
    await add_endpoint(partner.sandbox, receiver.url, format="mycover")
    package = (await partner.sandbox.call("POST", "quotes/", quote_request())).json()
    await partner.sandbox.call(
        "POST",
        f"bookings/{package['id']}/",
        {
            "quotes": [{"id": package["quotes"]["0"]["id"]}],
            "policyholder": policyholder(),
            "require_payment_confirmation": True,
        },
    )
    await asyncio.sleep(0.3)
    assert receiver.received == []  # BOOKING_CREATED is filtered; not paid yet for MyCover
    await partner.sandbox.call("PUT", f"bookings/{package['id']}/confirm", {})
    await receiver.wait_for(2)
    assert sorted(receiver.events()) == ["BOOKING_UPDATED", "purchase.successful"]


async def test_sandbox_events_never_reach_live_endpoints(
    services: Services, partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await add_endpoint(partner.live, receiver.url)
    await instant(partner)
    await asyncio.sleep(0.3)
    assert receiver.received == []
    async with services.database.reading() as session:
        rows = await session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.partner_id == partner.id)
        )
        assert list(rows) == []


async def test_created_then_cancelled_arrive_in_that_order_while_failing(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, retry_schedule=[0.3, 0.3, 0.3])
    receiver.answer(Answer(status=503), Answer(status=503), Answer(status=503))
    booking = await instant(partner)
    cancelled = await partner.sandbox.call("POST", f"bookings/{booking['id']}/cancel", {})
    assert cancelled.status_code == 200, cancelled.text
    await receiver.wait_for(5)
    assert receiver.events() == [
        "BOOKING_CREATED",
        "BOOKING_CREATED",
        "BOOKING_CREATED",
        "BOOKING_CREATED",
        "BOOKING_CANCELLED",
    ]
    final = receiver.received[-1].json()["payload"]
    assert final["status"] == "CANCELLED"
    assert final["quotes"][0]["refund_value"] == booking["total_price"]
    detail = await settle(partner, endpoint, "succeeded")
    assert detail["event"] == "BOOKING_CANCELLED"


async def test_a_turn_leases_what_the_queue_may_hold_and_stopping_gives_back_the_unsent(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    from coverline.webhooks.dispatcher import DispatchSettings

    await add_endpoint(partner.sandbox, receiver.url, max_concurrency=2)
    for _ in range(10):
        await instant(partner)
    # Slow answers keep the first two sends under way while the test looks and stops.
    receiver.answer(Answer(delay=1.0), Answer(delay=1.0))
    settings = DispatchSettings(allow_private_networks=True, batch_size=3)
    async with Dispatcher(services.database, services.box, services.clock, settings) as idle:
        await idle.turn()
        # Three leased: two sending (the endpoint's concurrency), one waiting its turn.
        assert await delivery_statuses(services, partner) == {"delivering": 3, "pending": 7}
    # Stopping finished and recorded the two sends and gave the third lease back.
    assert len(receiver.received) == 2
    assert await delivery_statuses(services, partner) == {"succeeded": 2, "pending": 8}


@pytest.mark.sqlite
async def test_the_turn_takes_the_write_lock_ahead_of_the_writers_waiting(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    """SQLite: a turn claims before the requests' transactions already waiting for the
    process's write lock, so a committed delivery does not wait for them all."""
    from coverline.webhooks.dispatcher import DispatchSettings

    await add_endpoint(partner.sandbox, receiver.url)
    await instant(partner)
    holding, release = asyncio.Event(), asyncio.Event()
    seen: list[dict[str, int]] = []

    async def holder() -> None:
        async with services.database.transaction():
            holding.set()
            await release.wait()

    async def writer() -> None:
        async with services.database.transaction() as session:
            rows = await session.execute(
                select(WebhookDelivery.status, func.count())
                .where(WebhookDelivery.partner_id == partner.id)
                .group_by(WebhookDelivery.status)
            )
            seen.append({status: count for status, count in rows.all()})

    # A slow answer keeps the delivery `delivering` while the writers look.
    receiver.answer(Answer(delay=0.5))
    settings = DispatchSettings(allow_private_networks=True)
    async with Dispatcher(services.database, services.box, services.clock, settings) as idle:
        held = asyncio.create_task(holder())
        await holding.wait()
        writers = [asyncio.create_task(writer()) for _ in range(2)]
        await asyncio.sleep(0)
        turn = asyncio.create_task(idle.turn())
        await asyncio.sleep(0)
        # The writers came first, yet the turn goes ahead of them.
        assert seen == []
        release.set()
        await asyncio.gather(held, *writers, turn)
        assert seen == [{"delivering": 1}, {"delivering": 1}]
    assert await delivery_statuses(services, partner) == {"succeeded": 1}


def test_an_endpoint_holds_what_it_sends_within_a_third_of_the_lease() -> None:
    from datetime import UTC, datetime

    import aiohttp

    from coverline.webhooks.dispatcher import DispatchSettings, EndpointConfig, EndpointQueue

    config = EndpointConfig(
        id=1,
        public_id="whe_1",
        url="https://partner.test/hooks",
        format="xcover",
        signature="xcover",
        key="whk_1",
        secrets=["whsec_x"],
        schedule=(30.0,),
        timeout=15.0,
        max_concurrency=16,
        version=datetime.now(UTC),
        client_timeout=aiohttp.ClientTimeout(total=15.0),
        refused=None,
    )
    settings = DispatchSettings(lease_seconds=90.0, batch_size=256)
    # 16 at a time, 15 s each (a hanging partner): 30 s of lease hold 32 deliveries.
    assert EndpointQueue(config, duration=15.0).target(settings) == 32
    # Slower still: never less than one round of its concurrency.
    assert EndpointQueue(config, duration=60.0).target(settings) == 16
    # A fast partner: as many as a claim may take.
    assert EndpointQueue(config, duration=0.005).target(settings) == 256


async def held_by_a_worker(
    services: Services, partner: PartnerFixture, receiver: Receiver, count: int, delay: float
) -> dict[str, Any]:
    """An endpoint of one slot with `count` deliveries leased by the running dispatcher: the
    first being sent (its answer takes `delay`), the others waiting in the worker's queue."""
    endpoint = await add_endpoint(partner.sandbox, receiver.url, max_concurrency=1)
    receiver.answer(Answer(delay=delay))
    for _ in range(count):
        await instant(partner)
    await receiver.wait_for(1)
    await statuses_become(services, partner, {"delivering": count})
    return endpoint


async def test_disabling_an_endpoint_gives_back_the_deliveries_waiting_in_a_queue(
    services: Services, partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await held_by_a_worker(services, partner, receiver, 5, delay=1.5)
    disabled = await partner.sandbox.call(
        "PATCH", f"webhooks/{endpoint['id']}/", {"enabled": False}
    )
    assert disabled.status_code == 200
    await statuses_become(services, partner, {"succeeded": 1, "pending": 4})
    async with services.database.reading() as session:
        leases = await session.execute(
            select(WebhookDelivery.leased_by, WebhookDelivery.lease_expires_at).where(
                WebhookDelivery.partner_id == partner.id,
                WebhookDelivery.status == "pending",
            )
        )
        assert leases.all() == [(None, None)] * 4
    assert len(receiver.received) == 1


async def test_deleting_an_endpoint_fails_what_a_worker_holds_for_it(
    services: Services, partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await held_by_a_worker(services, partner, receiver, 3, delay=1.0)
    deleted = await partner.sandbox.call("DELETE", f"webhooks/{endpoint['id']}/")
    assert deleted.status_code == 204, deleted.text
    await statuses_become(services, partner, {"failed": 3})
    # The one in flight is answered meanwhile: its attempt is logged, it stays failed.
    for _ in range(100):
        async with services.database.reading() as session:
            attempts = (
                await session.execute(
                    select(func.count())
                    .select_from(WebhookAttempt)
                    .join(WebhookDelivery, WebhookAttempt.delivery_id == WebhookDelivery.id)
                    .where(WebhookDelivery.partner_id == partner.id)
                )
            ).scalar_one()
        if attempts:
            break
        await asyncio.sleep(0.05)
    async with services.database.reading() as session:
        rows = await session.execute(
            select(
                WebhookDelivery.status,
                WebhookDelivery.last_error,
                WebhookDelivery.leased_by,
                WebhookDelivery.lease_expires_at,
            ).where(WebhookDelivery.partner_id == partner.id)
        )
        assert rows.all() == [("failed", "The endpoint was deleted.", None, None)] * 3
    assert attempts == 1
    assert len(receiver.received) == 1


async def test_the_body_is_rendered_at_commit_and_sent_as_stored_on_every_attempt(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    """The delivery's body row holds the exact bytes the partner receives, on the first
    attempt and on the retry; the delivery row has the event's request id for the attempt
    log."""
    from coverline.events.models import Event
    from coverline.webhooks import formats

    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    booking = await instant(partner)
    async with services.database.reading() as session:
        delivery, event = (
            await session.execute(
                select(WebhookDelivery, Event)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .where(WebhookDelivery.partner_id == partner.id)
            )
        ).one()
        stored = await service.stored_body(session, delivery)
    assert stored == formats.body_for(
        "xcover", "BOOKING_CREATED", 0, "BOOKING_CREATED", event.payload
    )
    assert delivery.request_id == event.request_id is not None
    receiver.answer(Answer(status=500))
    async with running_dispatcher(services):
        first, second = await receiver.wait_for(2)
    assert first.body == second.body == stored
    assert first.json()["payload"]["id"] == booking["id"]
    detail = await settle(partner, endpoint, "succeeded")
    assert [a["request_id"] for a in detail["attempts_log"]] == [event.request_id] * 2


async def test_a_delivery_without_a_stored_body_is_rendered_from_its_event(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    """Deliveries made before bodies were stored (migration 0009) have none: the dispatcher
    renders the same bytes from the event, and takes the request id from it."""
    from sqlalchemy import delete, update

    from coverline.events.models import Event

    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    await instant(partner)
    async with services.database.transaction() as session:
        delivery = await session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.partner_id == partner.id)
        )
        assert delivery is not None
        stored = await service.stored_body(session, delivery)
        assert stored is not None
        request_id = await session.scalar(
            select(Event.request_id).where(Event.id == delivery.event_id)
        )
        await session.execute(
            delete(WebhookDeliveryBody).where(
                WebhookDeliveryBody.delivery_public_id == delivery.public_id
            )
        )
        await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(request_id=None)
        )
    async with running_dispatcher(services):
        (received,) = await receiver.wait_for(1)
    assert received.body == stored
    detail = await settle(partner, endpoint, "succeeded")
    assert [a["request_id"] for a in detail["attempts_log"]] == [request_id]


async def test_a_format_change_applies_to_deliveries_made_after_it(
    services: Services, partner: PartnerFixture, receiver: Receiver
) -> None:
    """A pending delivery keeps the body it was made with; the next event uses the new
    format (MyCover sends a purchase only once paid: the instant booking is)."""
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    first = await instant(partner)
    changed = await partner.sandbox.call(
        "PATCH", f"webhooks/{endpoint['id']}/", {"format": "mycover"}
    )
    assert changed.status_code == 200, changed.text
    second = await instant(partner)
    async with running_dispatcher(services):
        received = await receiver.wait_for(2)
    by_event = {r.json().get("event"): r.json() for r in received}
    assert set(by_event) == {"BOOKING_CREATED", "purchase.successful"}
    assert by_event["BOOKING_CREATED"]["payload"]["id"] == first["id"]
    assert by_event["purchase.successful"]["data"]["reference"] == second["id"]


async def test_a_body_that_cannot_be_rendered_at_commit_never_fails_the_change(
    services: Services, partner: PartnerFixture, receiver: Receiver, monkeypatch: Any
) -> None:
    """The booking is answered 200 and its delivery made without a body; the dispatcher
    renders it from the event when it sends."""
    from coverline.webhooks import formats

    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    render = formats.body_for

    def broken(*_args: Any) -> bytes:
        raise KeyError("policy")

    monkeypatch.setattr(formats, "body_for", broken)
    booking = await instant(partner)
    monkeypatch.setattr(formats, "body_for", render)
    async with services.database.reading() as session:
        deliveries = (
            await session.execute(
                select(WebhookDelivery.public_id, WebhookDeliveryBody.body)
                .outerjoin(
                    WebhookDeliveryBody,
                    WebhookDeliveryBody.delivery_public_id == WebhookDelivery.public_id,
                )
                .where(WebhookDelivery.partner_id == partner.id)
            )
        ).all()
    assert [body for _public_id, body in deliveries] == [None]
    async with running_dispatcher(services):
        (received,) = await receiver.wait_for(1)
    assert received.json()["payload"]["id"] == booking["id"]
    detail = await settle(partner, endpoint, "succeeded")
    assert detail["attempts"] == 1
