"""Every method of the synchronous client against a real `coverline serve`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Dict

import pytest
from conftest import client_for
from sdkhelpers import gadget_item, nigerian_policyholder, policyholder, ticket_item

from coverline_sdk import (
    AuthenticationError,
    Booking,
    ConflictError,
    Coverline,
    NotFoundError,
    QuotePackage,
    ValidationError,
)

pytestmark = pytest.mark.slow


def test_quotes(client: Coverline) -> None:
    package = client.quotes.create(
        [ticket_item()],
        currency="GBP",
        customer_country="GB",
        customer_region="London",
        customer_language="en",
        partner_transaction_id="order-1",
    )
    assert isinstance(package, QuotePackage)
    assert package.status == "RECEIVED" and package.currency == "GBP"
    assert package.partner_transaction_id == "order-1"
    (quote,) = package.priced_quotes
    assert quote.price is not None and quote.price > 0 and isinstance(quote.price, Decimal)
    assert quote.policy is not None and quote.policy.policy_type == "event_ticket_protection"
    assert package.total_price == quote.price
    assert package.raw["quotes"]["0"]["id"] == quote.id

    assert client.quotes.get(package.id).id == package.id

    updated = client.quotes.update(package.id, currency="USD", customer_language="en-us")
    assert updated.currency == "USD"
    assert updated.priced_quotes[0].price_formatted.startswith("US$")  # type: ignore[union-attr]

    added = client.quotes.add(package.id, [gadget_item()])
    assert len(added.priced_quotes) == 2
    gadget = next(q for q in added.priced_quotes if q.id != quote.id)

    remaining = client.quotes.delete(package.id, [gadget.id])
    assert [q.id for q in remaining.priced_quotes] == [quote.id]

    declined = client.quotes.create([ticket_item()], currency="GBP")
    assert client.quotes.opt_out(declined.id) is None
    assert client.quotes.get(declined.id).status == "OPTED_OUT"


def test_bookings(client: Coverline) -> None:
    package = client.quotes.create([ticket_item(), ticket_item()], currency="GBP")
    first, second = package.priced_quotes
    booking = client.bookings.create(
        package.id,
        quotes=[first.id],
        policyholder=policyholder(phone="+447911123456"),
        partner_transaction_id="order-2",
    )
    assert isinstance(booking, Booking)
    assert booking.status == "CONFIRMED" and [q.id for q in booking.quotes] == [first.id]
    assert booking.policyholder is not None and booking.policyholder.phone == "+447911123456"
    assert (
        booking.coi_url
        and booking.security_token
        and booking.coi_url.endswith(booking.security_token)
    )
    assert booking.quotes[0].can_be_cancelled is True
    assert client.bookings.get(booking.id).quotes[0].id == first.id

    changed = client.bookings.modify(booking.id, policyholder={"phone": "+447911123457"})
    assert changed.policyholder is not None and changed.policyholder.phone == "+447911123457"

    with pytest.raises(ConflictError) as conflict:
        client.bookings.create(package.id, quotes=[second.id], policyholder=policyholder())
    assert conflict.value.status == 409 and conflict.value.request_id

    pending_package = client.quotes.create([ticket_item()], currency="GBP")
    pending = client.bookings.create(
        pending_package.id,
        quotes=[pending_package.priced_quotes[0].id],
        policyholder=policyholder(),
        require_payment_confirmation=True,
    )
    assert pending.status == "PENDING_PAYMENT"
    assert client.bookings.confirm_payment(pending.id).status == "CONFIRMED"

    instant = client.bookings.instant(
        [ticket_item()],
        currency="GBP",
        customer_country="GB",
        policyholder=nigerian_policyholder(),
        partner_transaction_id="Ọ-order-3",
    )
    assert instant.status == "CONFIRMED"
    assert instant.policyholder is not None and instant.policyholder.first_name == "Ọláolúwa"
    assert instant.partner_transaction_id == "Ọ-order-3"


def test_listing_and_iterating_bookings(client: Coverline) -> None:
    for _ in range(3):
        client.bookings.instant([ticket_item()], currency="GBP", policyholder=policyholder())
    page = client.bookings.list(limit=2)
    assert page.count >= 3 and len(page.results) == 2 and page.next is not None
    second = client.bookings.list(limit=2, offset=2)
    assert second.previous is not None
    everything = list(client.bookings.iterate(page_size=2))
    assert len(everything) == page.count
    assert len({b.id for b in everything}) == page.count
    assert {b.id for b in page.results} <= {b.id for b in everything}


def test_errors_from_the_server(server: Any, partner: Dict[str, Any], client: Coverline) -> None:
    with pytest.raises(ValidationError) as invalid:
        client.bookings.instant(
            [ticket_item()], currency="GBP", policyholder=policyholder(phone="447911123456")
        )
    error = invalid.value
    assert error.status == 422 and error.type == "validation_error"
    assert error.errors["policyholder"]["phone"] == [
        'The phone number should start with "+" character'
    ]
    assert error.request_id and len(error.request_id) >= 16

    with pytest.raises(ValidationError) as unexpected:
        client.quotes.create([ticket_item(policy_version=2)], currency="GBP")
    assert unexpected.value.errors

    with pytest.raises(NotFoundError) as missing:
        client.bookings.get("AAAAA-BBBBB-INS")
    assert missing.value.status == 404 and missing.value.request_id

    wrong = dict(partner, sandbox=dict(partner["sandbox"], api_secret="sk_sandbox_wrong"))
    with client_for(server, wrong, max_retries=0) as bad, pytest.raises(AuthenticationError):
        bad.bookings.list()


def test_bearer_and_other_algorithms(server: Any, partner: Dict[str, Any]) -> None:
    with client_for(server, partner, auth="bearer") as bearer:
        assert bearer.bookings.list(limit=1).count >= 0
    for algorithm in ("hmac-sha256", "hmac-sha384"):
        with client_for(server, partner, algorithm=algorithm) as signed:
            assert signed.quotes.create([ticket_item()], currency="GBP").id


def test_explicit_idempotency_keys_replay_the_stored_result(client: Coverline) -> None:
    key = f"order-{datetime.now(timezone.utc).timestamp()}"
    request = [ticket_item()]
    first = client.bookings.instant(
        request, currency="GBP", policyholder=policyholder(), idempotency_key=key
    )
    again = client.bookings.instant(
        request, currency="GBP", policyholder=policyholder(), idempotency_key=key
    )
    assert again.id == first.id and again.raw == first.raw
    with pytest.raises(ValidationError) as reused:
        client.bookings.instant(
            [ticket_item()], currency="EUR", policyholder=policyholder(), idempotency_key=key
        )
    assert "x-idempotency-key" in reused.value.errors


def test_renewals_and_the_sandbox_clock(server: Any, other_partner: Dict[str, Any]) -> None:
    with client_for(server, other_partner) as client:
        clock = client.sandbox.clock()
        assert clock.transitions == []
        booking = client.bookings.instant(
            [gadget_item(now=clock.now)],
            currency="NGN",
            customer_country="NG",
            policyholder=nigerian_policyholder(),
        )
        quote = booking.quotes[0]
        assert quote.is_renewable is True and quote.next_renewal is not None
        assert quote.next_renewal.status == "ACTIVE"

        moved = client.sandbox.advance("P32D")
        assert moved.offset_seconds >= clock.offset_seconds + 31 * 86400
        events = [t.event for t in moved.transitions]
        assert events == ["RENEWAL_NOTIFICATION", "RENEWAL_DUE"]
        assert all(t.booking_id == booking.id for t in moved.transitions)
        assert moved.transitions[0].renewal_id == quote.next_renewal.id

        quoted = client.renewals.quote_for_renewal(booking.id)
        assert quoted.renewal_id == quote.next_renewal.id
        assert quoted.renewal is not None and quoted.renewal.price is not None
        assert quoted.renewal.status == "DUE"
        paid = client.renewals.confirm(booking.id, quoted.renewal_id)
        assert paid.renewal is not None and paid.renewal.paid_on is not None
        assert paid.quotes[0].total_renewed_times == 1

        later = client.sandbox.advance(timedelta(days=1))
        assert later.now > moved.now
        target = later.now + timedelta(days=2)
        reached = client.sandbox.set(target).now
        assert target <= reached < target + timedelta(seconds=30)  # the clock keeps running
        with pytest.raises(ValidationError):
            client.sandbox.set(target - timedelta(days=1))

        stopped = client.renewals.opt_out(booking.id)
        assert stopped.quotes[0].next_renewal is None
        with pytest.raises(ConflictError):
            client.renewals.opt_out(booking.id)


def test_webhook_endpoints_and_deliveries(client: Coverline) -> None:
    # Port 9 (discard) refuses connections: every delivery fails at once, with no retry.
    endpoint = client.webhooks.create(
        "http://127.0.0.1:9/hooks",
        format="xcover",
        signature="standard",
        description="refusing receiver",
        retry_schedule=[],
        timeout_seconds=2,
    )
    assert endpoint.signature == "standard" and endpoint.secret and endpoint.key
    assert endpoint.secret.startswith("whsec_")
    assert endpoint.id in {e.id for e in client.webhooks.list()}
    assert client.webhooks.get(endpoint.id).description == "refusing receiver"

    updated = client.webhooks.update(endpoint.id, events=["BOOKING_CREATED"], description=None)
    assert updated.events == ["BOOKING_CREATED"] and updated.description is None
    assert client.webhooks.update(endpoint.id, events=None).events is None

    secret = client.webhooks.secret(endpoint.id)
    assert secret.secret == endpoint.secret and secret.key == endpoint.key
    rotated = client.webhooks.rotate_secret(endpoint.id)
    assert rotated.secret != endpoint.secret and rotated.previous_secret_expires_at is not None

    test = client.webhooks.test(endpoint.id)
    assert test.event == "WEBHOOK_TEST"
    delivery = _wait_for_status(client, endpoint.id, test.id, "failed")
    assert delivery.attempts_log and delivery.attempts_log[0].error
    assert delivery.payload is not None and delivery.payload["endpoint_id"] == endpoint.id
    # The request that sent the test is named on the delivery and on each of its attempts.
    assert delivery.request_id and delivery.attempts_log[0].request_id == delivery.request_id

    page = client.webhooks.deliveries(endpoint.id, status="failed")
    assert test.id in {d.id for d in page.results}
    assert test.id in {d.id for d in client.webhooks.iterate_deliveries(endpoint.id, page_size=1)}

    again = client.webhooks.redeliver(endpoint.id, test.id)
    assert again.id == test.id and again.status == "pending"
    _wait_for_status(client, endpoint.id, test.id, "failed")
    recovered = client.webhooks.recover(
        endpoint.id, datetime.now(timezone.utc) - timedelta(hours=1)
    )
    assert recovered.recovered >= 1

    assert client.webhooks.delete(endpoint.id) is None
    with pytest.raises(NotFoundError):
        client.webhooks.get(endpoint.id)


def _wait_for_status(client: Coverline, endpoint_id: str, delivery_id: str, status: str) -> Any:
    import time

    deadline = time.monotonic() + 20
    while True:
        delivery = client.webhooks.delivery(endpoint_id, delivery_id)
        if delivery.status == status or time.monotonic() > deadline:
            assert delivery.status == status
            return delivery
        time.sleep(0.1)


def test_api_keys(server: Any, client: Coverline) -> None:
    current = next(k for k in client.api_keys.list() if k.current)
    assert current.mode == "sandbox" and current.status == "active"
    created = client.api_keys.create()
    assert created.api_secret and created.api_key != current.api_key
    assert {current.api_key, created.api_key} <= {k.api_key for k in client.api_keys.list()}
    code = client.config.partner_code
    with Coverline(server.base_url, code, created.api_key, created.api_secret) as rotated:
        assert rotated.bookings.list(limit=1).count >= 0
        revoked = client.api_keys.revoke(created.api_key)
        assert revoked.status == "revoked" and revoked.revoked_at is not None
        with pytest.raises(AuthenticationError):
            rotated.bookings.list(limit=1)


def test_auxiliary(client: Coverline) -> None:
    countries = client.auxiliary.countries()
    assert "NG" in {c.code for c in countries}
    nigeria = client.auxiliary.country("NG")
    assert nigeria.currency == "NGN" and nigeria.calling_code == "+234"
    regions = client.auxiliary.regions("NG")
    lagos = next(r for r in regions if r.code == "NG-LA")
    assert lagos.local_government_areas and "Ikeja" in lagos.local_government_areas
    currencies = {c.code: c for c in client.auxiliary.currencies()}
    assert currencies["JPY"].minor_units == 0 and currencies["BHD"].minor_units == 3
    assert "en" in {language.code for language in client.auxiliary.languages()}
    with pytest.raises(NotFoundError):
        client.auxiliary.country("XX")


def test_any_call_through_request(client: Coverline) -> None:
    answer = client.request("GET", "bookings/", params={"limit": 1})
    assert set(answer) == {"count", "next", "previous", "results"}
    countries = client.request("GET", "/api/auxiliary/countries/")
    assert countries["count"] == len(countries["results"])
    created = client.request(
        "POST", "quotes/", json={"request": [ticket_item()], "currency": "GBP"}
    )
    assert created["status"] == "RECEIVED"
    assert client.request("POST", f"bookings/{created['id']}/opt_out") is None  # 204
