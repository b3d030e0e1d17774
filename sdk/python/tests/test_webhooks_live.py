"""Webhook verification of real deliveries from a running server, for every scheme, with a
non-ASCII customer name; and the rejection of tampered bodies, wrong secrets and stale
timestamps."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List

import pytest
from conftest import repo_module
from sdkhelpers import NON_ASCII_FIRST, NON_ASCII_LAST, nigerian_policyholder, ticket_item

from coverline_sdk import (
    AsyncCoverline,
    Booking,
    Webhook,
    WebhookEndpoint,
    WebhookVerificationError,
)

pytestmark = pytest.mark.slow

# name: (body format, signature scheme)
SETUPS = {
    "standard": ("mycover", "standard"),
    "xcover": ("mycover", "xcover"),
    "mycover": ("mycover", "mycover"),
    "standard/xcover-format": ("xcover", "standard"),
    "xcover/xcover-format": ("xcover", "xcover"),
}
TRANSACTION = "commande-Adéwálé-Ọ1"


@dataclass
class Hook:
    endpoint: WebhookEndpoint
    receiver: Any
    body: bytes
    headers: Dict[str, str]


@dataclass
class Deliveries:
    client: AsyncCoverline
    booking: Booking
    hooks: Dict[str, Hook]


@pytest.fixture(scope="module")
async def delivered(server: Any, other_partner: Dict[str, Any]) -> AsyncIterator[Deliveries]:
    """One endpoint per setup, each with a receiver of its own, and one booking by
    Ọláolúwa Adéwálé delivered to all of them."""
    receivers = repo_module("tests.fixtures.receiver")
    sandbox = other_partner["sandbox"]
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            AsyncCoverline(
                server.base_url, other_partner["code"], sandbox["api_key"], sandbox["api_secret"]
            )
        )
        endpoints = {}
        for name, (fmt, scheme) in SETUPS.items():
            receiver = await stack.enter_async_context(receivers.running_receiver())
            endpoint = await client.webhooks.create(
                receiver.url, format=fmt, signature=scheme, description=name
            )
            endpoints[name] = (endpoint, receiver)
        clock = await client.sandbox.clock()
        booking = await client.bookings.instant(
            [ticket_item(now=clock.now)],
            currency="GBP",
            customer_country="GB",
            policyholder=nigerian_policyholder(),
            partner_transaction_id=TRANSACTION,
        )
        hooks = {}
        for name, (endpoint, receiver) in endpoints.items():
            (received,) = await receiver.wait_for(1, timeout=30)
            hooks[name] = Hook(endpoint, receiver, received.body, dict(received.headers))
        yield Deliveries(client, booking, hooks)
        for endpoint, _ in endpoints.values():
            await client.webhooks.delete(endpoint.id)


@pytest.mark.parametrize("name", list(SETUPS))
async def test_real_deliveries_verify_as_typed_events(name: str, delivered: Deliveries) -> None:
    hook = delivered.hooks[name]
    fmt, scheme = SETUPS[name]
    event = Webhook.from_endpoint(hook.endpoint).verify(hook.body, hook.headers)
    assert event.scheme == scheme and event.format == fmt
    assert event.id == hook.headers["webhook-id"] and event.timestamp is not None
    if fmt == "mycover":
        assert NON_ASCII_FIRST.encode() in hook.body  # sent as UTF-8, unescaped
        assert event.type == "purchase.successful" and event.purchase is not None
        assert event.purchase.reference == delivered.booking.id
        assert event.purchase.id == delivered.booking.quotes[0].id
        assert event.purchase.customer is not None
        assert event.purchase.customer.first_name == NON_ASCII_FIRST
        assert event.purchase.customer.last_name == NON_ASCII_LAST
        assert event.purchase.amount == delivered.booking.quotes[0].price
    else:
        assert TRANSACTION.encode() in hook.body
        assert event.type == "BOOKING_CREATED" and event.booking is not None
        assert event.booking.id == delivered.booking.id
        assert event.booking.partner_transaction_id == TRANSACTION
        assert event.booking.total_price == delivered.booking.total_price


def _tamper(body: bytes) -> bytes:
    for old, new in ((NON_ASCII_LAST, "Adewale"), (TRANSACTION, "commande-2")):
        if old.encode() in body:
            return body.replace(old.encode(), new.encode())
    raise AssertionError("nothing to tamper with")


@pytest.mark.parametrize("name", ["standard", "mycover", "standard/xcover-format"])
async def test_tampered_bodies_are_rejected(name: str, delivered: Deliveries) -> None:
    hook = delivered.hooks[name]
    verifier = Webhook.from_endpoint(hook.endpoint)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(_tamper(hook.body), hook.headers)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(hook.body + b" ", hook.headers)


@pytest.mark.parametrize("name", ["xcover", "xcover/xcover-format"])
async def test_the_xcover_scheme_signs_the_date_not_the_body(
    name: str, delivered: Deliveries
) -> None:
    hook = delivered.hooks[name]
    verifier = Webhook.from_endpoint(hook.endpoint)
    later = dict(hook.headers, Date=time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
    if later["Date"] != hook.headers["Date"]:
        with pytest.raises(WebhookVerificationError):
            verifier.verify(hook.body, later)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(hook.body, dict(hook.headers, Date="Mon, 01 Jan 2024 00:00:00 GMT"))
    # XCover's scheme covers the Date header only: a changed body still verifies. Prefer the
    # standard scheme, which signs the body, where the receiver can choose.
    assert verifier.verify(_tamper(hook.body), hook.headers).type


@pytest.mark.parametrize("name", list(SETUPS))
async def test_wrong_secrets_are_rejected(
    name: str, delivered: Deliveries, other_partner: Dict[str, Any]
) -> None:
    hook = delivered.hooks[name]
    scheme = SETUPS[name][1]
    wrong: List[str] = {
        "standard": ["whsec_" + "QUJD" * 8],
        "xcover": ["whsec_" + "QUJD" * 8, hook.endpoint.secret + "x"],  # type: ignore[operator]
        "mycover": [other_partner["live"]["api_secret"], "sk_sandbox_wrong"],
    }[scheme]
    for secret in wrong:
        verifier = Webhook(secret, scheme=scheme, key=hook.endpoint.key)
        with pytest.raises(WebhookVerificationError):
            verifier.verify(hook.body, hook.headers)
    if scheme == "xcover":
        with pytest.raises(WebhookVerificationError):
            Webhook(hook.endpoint.secret, scheme="xcover", key="whk_other").verify(  # type: ignore[arg-type]
                hook.body, hook.headers
            )


@pytest.mark.parametrize("name", ["standard", "xcover", "standard/xcover-format"])
async def test_stale_timestamps_are_rejected(name: str, delivered: Deliveries) -> None:
    hook = delivered.hooks[name]
    verifier = Webhook.from_endpoint(hook.endpoint, tolerance=300)
    assert verifier.verify(hook.body, hook.headers, now=time.time() + 200).type
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(hook.body, hook.headers, now=time.time() + 400)
    with pytest.raises(WebhookVerificationError, match="future"):
        verifier.verify(hook.body, hook.headers, now=time.time() - 400)


async def test_mycover_has_no_timestamp_to_check(delivered: Deliveries) -> None:
    hook = delivered.hooks["mycover"]
    verifier = Webhook.from_endpoint(hook.endpoint)
    # MyCover.ai's signature covers the body alone: drop replays by webhook-id instead.
    assert verifier.verify(hook.body, hook.headers, now=time.time() + 86400).id


async def test_both_secrets_verify_during_a_rotation(delivered: Deliveries) -> None:
    hook = delivered.hooks["standard"]
    old = hook.endpoint
    rotated = await delivered.client.webhooks.rotate_secret(old.id)
    assert rotated.secret != old.secret
    hook.receiver.received.clear()
    await delivered.client.webhooks.test(old.id)
    (received,) = await hook.receiver.wait_for(1, timeout=30)
    headers = dict(received.headers)
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (old.secret, rotated.secret):
        event = Webhook(secret, scheme="standard").verify(received.body, headers)  # type: ignore[arg-type]
        assert event.type == "webhook.test"
    fetched = await delivered.client.webhooks.secret(old.id)
    assert fetched.secret == rotated.secret
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(received.body, headers)
