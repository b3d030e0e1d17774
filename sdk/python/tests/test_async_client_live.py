"""The asynchronous client against a real server; its methods mirror the synchronous ones."""

from __future__ import annotations

import asyncio
import inspect
from datetime import timedelta
from typing import Any, AsyncIterator, Dict, Set

import pytest
from sdkhelpers import gadget_item, policyholder, ticket_item

from coverline_sdk import (
    AsyncCoverline,
    ConflictError,
    Coverline,
    NotFoundError,
    ValidationError,
)


@pytest.fixture
async def aclient(server: Any, partner: Dict[str, Any]) -> AsyncIterator[AsyncCoverline]:
    sandbox = partner["sandbox"]
    async with AsyncCoverline(
        server.base_url, partner["code"], sandbox["api_key"], sandbox["api_secret"]
    ) as made:
        yield made


def _resources(client: Any) -> Dict[str, Any]:
    return {name: value for name, value in vars(client).items() if hasattr(value, "_client")}


def test_both_clients_have_the_same_methods_and_signatures() -> None:
    options: Dict[str, Any] = dict(
        base_url="http://x", partner_code="DEMO1", api_key="k", api_secret="s"
    )
    sync, asynchronous = Coverline(**options), AsyncCoverline(**options)
    sync_resources, async_resources = _resources(sync), _resources(asynchronous)
    assert (
        set(sync_resources)
        == set(async_resources)
        == {
            "quotes",
            "bookings",
            "renewals",
            "webhooks",
            "messages",
            "sandbox",
            "api_keys",
            "auxiliary",
        }
    )
    count = 0
    for name, resource in sync_resources.items():
        twin = async_resources[name]
        methods = [m for m in dir(resource) if not m.startswith("_")]
        assert methods == [m for m in dir(twin) if not m.startswith("_")]
        for method in methods:
            left, right = getattr(resource, method), getattr(twin, method)
            assert inspect.signature(left).parameters == inspect.signature(right).parameters
            assert left.__doc__ == right.__doc__
            iterator = method.startswith("iterate")
            assert inspect.iscoroutinefunction(right) is not iterator, f"{name}.{method}"
            count += 1
    assert count >= 49
    assert inspect.signature(Coverline.request).parameters.keys() == (
        inspect.signature(AsyncCoverline.request).parameters.keys()
    )


@pytest.mark.slow
async def test_async_quotes_bookings_and_pages(aclient: AsyncCoverline) -> None:
    package = await aclient.quotes.create([ticket_item(), gadget_item()], currency="GBP")
    assert len(package.priced_quotes) == 2
    assert (await aclient.quotes.get(package.id)).id == package.id
    package = await aclient.quotes.update(package.id, customer_country="GB")
    package = await aclient.quotes.add(package.id, [ticket_item()])
    gadget = next(
        q for q in package.priced_quotes if q.policy and q.policy.policy_type == "gadget_cover"
    )
    package = await aclient.quotes.delete(package.id, [gadget.id])
    booking = await aclient.bookings.create(
        package.id,
        quotes=[q.id for q in package.priced_quotes],
        policyholder=policyholder(),
        require_payment_confirmation=True,
    )
    assert booking.status == "PENDING_PAYMENT" and len(booking.quotes) == 2
    assert (await aclient.bookings.confirm_payment(booking.id)).status == "CONFIRMED"
    modified = await aclient.bookings.modify(booking.id, policyholder={"first_name": "Marc"})
    assert modified.policyholder is not None and modified.policyholder.first_name == "Marc"

    declined = await aclient.quotes.create([ticket_item()], currency="GBP")
    assert await aclient.quotes.opt_out(declined.id) is None

    # Concurrent calls share the client's connections.
    instant = [
        aclient.bookings.instant([ticket_item()], currency="GBP", policyholder=policyholder())
        for _ in range(3)
    ]
    made = await asyncio.gather(*instant)
    assert len({b.id for b in made}) == 3

    page = await aclient.bookings.list(limit=2)
    seen = [b.id async for b in aclient.bookings.iterate(page_size=3)]
    assert len(seen) == page.count and len(set(seen)) == page.count
    assert {b.id for b in made} <= set(seen)
    assert (await aclient.bookings.get(made[0].id)).id == made[0].id


@pytest.mark.slow
async def test_async_lifecycle_and_errors(aclient: AsyncCoverline, server_paths: Set[str]) -> None:
    booking = await aclient.bookings.instant(
        [ticket_item(), ticket_item()], currency="GBP", policyholder=policyholder()
    )
    first, second = booking.quotes
    change = {"id": first.id, "update_fields": {"number_of_tickets": 3}}
    priced = await aclient.bookings.quote_for_update(booking.id, quotes=[change])
    assert priced.update_id is not None
    await aclient.bookings.confirm_update(booking.id, priced.update_id)
    preview = await aclient.bookings.cancel(booking.id, preview=True, quote_ids=[second.id])
    assert preview.cancellation_id is not None
    done = await aclient.bookings.confirm_cancellation(booking.id, preview.cancellation_id)
    assert [q.id for q in done.quotes] == [second.id]
    assert (await aclient.bookings.cancel(booking.id)).status == "CANCELLED"
    with pytest.raises(ConflictError):
        await aclient.bookings.cancel(booking.id)
    assert isinstance((await aclient.bookings.instalments(booking.id)).quotes, list)
    if "/api/partners/{partner_code}/messages/" in server_paths:
        await aclient.bookings.send_email(booking.id, event="BOOKING_CANCELLED")
        messages = [m async for m in aclient.messages.iterate(booking=booking.id)]
        assert messages and (await aclient.messages.get(messages[0].id)).booking_id == booking.id
        assert (await aclient.messages.list(booking=booking.id)).count == len(messages)

    with pytest.raises(ValidationError) as invalid:
        await aclient.quotes.create([ticket_item()], currency="XYZ")
    assert "currency" in invalid.value.errors and invalid.value.request_id
    with pytest.raises(NotFoundError):
        await aclient.bookings.get("AAAAA-BBBBB-INS")


@pytest.mark.slow
async def test_async_webhooks_keys_sandbox_and_auxiliary(aclient: AsyncCoverline) -> None:
    endpoint = await aclient.webhooks.create(
        "http://127.0.0.1:9/hooks", format="mycover", retry_schedule=[], enabled=False
    )
    assert endpoint.signature == "mycover" and endpoint.key is None
    assert (await aclient.webhooks.get(endpoint.id)).enabled is False
    assert endpoint.id in {e.id for e in await aclient.webhooks.list()}
    updated = await aclient.webhooks.update(endpoint.id, enabled=True, max_concurrency=2)
    assert updated.enabled and updated.max_concurrency == 2
    assert (await aclient.webhooks.secret(endpoint.id)).secret == endpoint.secret
    rotated = await aclient.webhooks.rotate_secret(endpoint.id)
    assert rotated.id == endpoint.id
    test = await aclient.webhooks.test(endpoint.id)
    for _ in range(200):
        delivery = await aclient.webhooks.delivery(endpoint.id, test.id)
        if delivery.status == "failed":
            break
        await asyncio.sleep(0.1)
    assert delivery.status == "failed"
    page = await aclient.webhooks.deliveries(endpoint.id)
    assert [d.id async for d in aclient.webhooks.iterate_deliveries(endpoint.id)] == [
        d.id for d in page.results
    ]
    assert (await aclient.webhooks.redeliver(endpoint.id, test.id)).status == "pending"
    recovered = await aclient.webhooks.recover(endpoint.id, "2000-01-01T00:00:00Z")
    assert recovered.recovered >= 0
    await aclient.webhooks.delete(endpoint.id)

    keys = await aclient.api_keys.list()
    created = await aclient.api_keys.create()
    assert created.api_secret and len(await aclient.api_keys.list()) == len(keys) + 1
    assert (await aclient.api_keys.revoke(created.api_key)).status == "revoked"

    clock = await aclient.sandbox.clock()
    assert clock.now.tzinfo is not None
    assert (await aclient.auxiliary.country("GB")).currency == "GBP"
    assert len(await aclient.auxiliary.countries()) > 200
    assert await aclient.auxiliary.regions("NG")
    assert await aclient.auxiliary.currencies()
    assert await aclient.auxiliary.languages()
    answer = await aclient.request("GET", "bookings/", params={"limit": 1})
    assert "results" in answer


@pytest.mark.slow
async def test_async_renewals(server: Any, other_partner: Dict[str, Any]) -> None:
    sandbox = other_partner["sandbox"]
    async with AsyncCoverline(
        server.base_url, other_partner["code"], sandbox["api_key"], sandbox["api_secret"]
    ) as client:
        clock = await client.sandbox.clock()
        booking = await client.bookings.instant(
            [gadget_item(now=clock.now)],
            currency="NGN",
            customer_country="NG",
            policyholder=policyholder(country="NG"),
        )
        quoted = await client.renewals.quote_for_renewal(booking.id)
        assert quoted.renewal_id is not None
        paid = await client.renewals.confirm(booking.id, quoted.renewal_id)
        assert paid.quotes[0].total_renewed_times == 1
        moved = await client.sandbox.advance("PT1H")
        assert moved.now > clock.now
        target = (moved.now + timedelta(hours=1)).replace(microsecond=0)
        assert (await client.sandbox.set(target.isoformat())).now >= target
        stopped = await client.renewals.opt_out(booking.id)
        assert stopped.quotes[0].next_renewal is None
