"""Modifications, cancellations, instalments and messages against a real server."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Set

import pytest
from conftest import need
from sdkhelpers import policyholder, ticket_item

from coverline_sdk import ConflictError, Coverline

pytestmark = pytest.mark.slow


def _booking(client: Coverline, items: int = 1) -> Any:
    return client.bookings.instant(
        [ticket_item() for _ in range(items)], currency="GBP", policyholder=policyholder()
    )


def test_priced_modification(client: Coverline, server_paths: Set[str]) -> None:
    need(server_paths, "bookings/{package_id}/quote_for_update")
    booking = _booking(client)
    quote = booking.quotes[0]
    change = {"id": quote.id, "update_fields": {"tickets": [{"price": 500}]}}
    priced = client.bookings.quote_for_update(booking.id, quotes=[change])
    assert priced.update_id is not None and priced.update_id.endswith("-UPD")
    assert priced.update_expires_at is not None
    assert priced.total_price_diff is not None and priced.total_price_diff > 0
    assert priced.quotes[0].price_diff == priced.total_price_diff
    assert client.bookings.get(booking.id).total_price == booking.total_price

    confirmed = client.bookings.confirm_update(booking.id, priced.update_id)
    assert confirmed.total_price == priced.total_price
    assert client.bookings.get(booking.id).total_price == priced.total_price
    with pytest.raises(ConflictError):
        client.bookings.confirm_update(booking.id, priced.update_id)


def test_cancellation_preview_then_confirmation(client: Coverline, server_paths: Set[str]) -> None:
    need(server_paths, "bookings/{package_id}/cancel")
    booking = _booking(client, items=2)
    preview = client.bookings.cancel(booking.id, preview=True)
    assert preview.is_preview and preview.cancellation_id is not None
    assert preview.cancellation_id.endswith("-CCL") and preview.confirm_before is not None
    assert preview.total_refund is not None and preview.total_refund >= 0
    assert {q.id for q in preview.quotes} == {q.id for q in booking.quotes}
    assert all(q.refund_value is not None and q.adjustment_fee is not None for q in preview.quotes)
    assert sum((q.refund_value or Decimal(0)) for q in preview.quotes) == preview.total_refund
    assert client.bookings.get(booking.id).status == "CONFIRMED"

    done = client.bookings.confirm_cancellation(booking.id, preview.cancellation_id)
    assert not done.is_preview and done.status == "CANCELLED"
    assert done.total_refund == preview.total_refund
    assert client.bookings.get(booking.id).status == "CANCELLED"
    with pytest.raises(ConflictError) as again:
        client.bookings.cancel(booking.id)
    assert again.value.request_id


def test_partial_cancellation_at_once(client: Coverline, server_paths: Set[str]) -> None:
    need(server_paths, "bookings/{package_id}/cancel")
    booking = _booking(client, items=2)
    first, second = booking.quotes
    done = client.bookings.cancel(booking.id, quote_ids=[first.id])
    assert [q.id for q in done.quotes] == [first.id] and done.status == "CONFIRMED"
    after = {q.id: q.status for q in client.bookings.get(booking.id).quotes}
    assert after == {first.id: "CANCELLED", second.id: "CONFIRMED"}


def test_instalments(client: Coverline, server_paths: Set[str]) -> None:
    need(server_paths, "bookings/{package_id}/instalments/")
    package = client.quotes.create([ticket_item()], currency="GBP", customer_country="GB")
    quote_id = package.priced_quotes[0].id
    booking = client.bookings.create(
        package.id,
        quotes=[{"id": quote_id, "instalment_plan": "1year-monthly"}],
        policyholder=policyholder(),
    )
    instalments = client.bookings.instalments(booking.id)
    (schedule,) = instalments.quotes
    assert schedule.quote_id == quote_id and len(schedule.payment_schedule) == 12
    assert schedule.payment_schedule[0].status == "PAID"
    assert schedule.next_payment is not None and schedule.next_payment.number == 2
    paid_before = schedule.total_amount_paid

    payment = {
        "id": quote_id,
        "instalment_number": 2,
        "payment_status": "PAID",
        "payment_attempted_date": datetime.now(timezone.utc),
    }
    assert client.bookings.update_instalments(booking.id, [payment]) is None
    (after,) = client.bookings.instalments(booking.id).quotes
    assert after.next_payment is not None and after.next_payment.number == 3
    assert paid_before is not None and after.total_amount_paid is not None
    assert after.total_amount_paid > paid_before


def test_send_email_and_the_message_log(client: Coverline, server_paths: Set[str]) -> None:
    need(server_paths, "messages/")
    booking = _booking(client)
    sent = client.bookings.send_email(booking.id)
    messages = client.messages.list(booking=booking.id)
    assert messages.count >= 1
    assert all(m.booking_id == booking.id for m in messages.results)
    if sent is not None:
        assert sent.id in {m.id for m in messages.results}
    one = client.messages.get(messages.results[0].id)
    assert one.id == messages.results[0].id and one.recipient
    everything = list(client.messages.iterate(booking=booking.id, page_size=1))
    assert len(everything) == messages.count
    assert client.messages.list(limit=1).count >= messages.count
