"""Retries and idempotent replays through a recording proxy in front of a real server."""

from __future__ import annotations

from typing import Any, Dict, Iterator

import pytest
from sdkhelpers import RecordingProxy, Step, policyholder, ticket_item

from coverline_sdk import (
    AsyncCoverline,
    BadRequestError,
    Coverline,
    RetryPolicy,
    ServerError,
)

pytestmark = pytest.mark.slow
FAST = RetryPolicy(max_retries=3, initial_backoff=0.05, max_backoff=0.2)


@pytest.fixture(scope="module")
def proxy(server: Any) -> Iterator[RecordingProxy]:
    started = RecordingProxy(server.base_url)
    yield started
    started.close()


@pytest.fixture
def proxied(proxy: RecordingProxy, partner: Dict[str, Any]) -> Iterator[Coverline]:
    sandbox = partner["sandbox"]
    with Coverline(
        proxy.url, partner["code"], sandbox["api_key"], sandbox["api_secret"], retry=FAST
    ) as made:
        yield made


def _instant(client: Coverline) -> Any:
    return client.bookings.instant([ticket_item()], currency="GBP", policyholder=policyholder())


def test_503_then_200_is_two_signed_attempts_with_one_idempotency_key(
    proxy: RecordingProxy, proxied: Coverline, client: Coverline
) -> None:
    proxy.script(Step(503, {"Retry-After": "1"}, b'{"type":"api_error","message":"busy"}'))
    booking = _instant(proxied)
    first, second = proxy.seen
    assert first.upstream_status is None and second.upstream_status == 200
    assert first.headers["Date"] != second.headers["Date"]
    assert first.headers["Authorization"] != second.headers["Authorization"]
    assert first.headers["x-idempotency-key"] == second.headers["x-idempotency-key"]
    assert first.body == second.body
    assert client.bookings.get(booking.id).status == "CONFIRMED"


@pytest.mark.parametrize("status", [423, 429, 502, 504])
def test_other_retried_statuses(status: int, proxy: RecordingProxy, proxied: Coverline) -> None:
    proxy.script(Step(status, {"Retry-After": "0"}), Step(status))
    booking = _instant(proxied)
    assert booking.status == "CONFIRMED"
    assert len(proxy.seen) == 3
    assert len({seen.headers["x-idempotency-key"] for seen in proxy.seen}) == 1


def test_a_lost_answer_is_replayed_from_the_stored_result(
    proxy: RecordingProxy, proxied: Coverline, client: Coverline
) -> None:
    before = client.bookings.list(limit=1).count
    # The server books, but the answer is lost on the way back (the gateway says 502).
    proxy.script(Step(502, forward=True))
    booking = _instant(proxied)
    first, second = proxy.seen
    assert first.upstream_status == 200
    assert second.upstream_status == 409  # Idempotent-Replayed: the stored answer
    assert first.headers["x-idempotency-key"] == second.headers["x-idempotency-key"]
    assert client.bookings.list(limit=1).count == before + 1
    assert client.bookings.get(booking.id).id == booking.id


def test_a_dropped_connection_is_retried_and_replayed(
    proxy: RecordingProxy, proxied: Coverline, client: Coverline
) -> None:
    before = client.bookings.list(limit=1).count
    proxy.script(Step(drop=True))
    booking = _instant(proxied)
    assert [seen.upstream_status for seen in proxy.seen] == [200, 409]
    assert client.bookings.list(limit=1).count == before + 1
    assert booking.status == "CONFIRMED"


def test_a_plain_409_is_not_a_replay(proxy: RecordingProxy, proxied: Coverline) -> None:
    from coverline_sdk import ConflictError

    proxy.script(Step(409, {"X-Request-Id": "req-conflict"}, b'{"type":"conflict","message":"no"}'))
    with pytest.raises(ConflictError) as caught:
        proxied.bookings.get("AAAAA-BBBBB-INS")
    assert caught.value.request_id == "req-conflict" and len(proxy.seen) == 1


def test_no_retry_on_client_errors_and_spent_retries(
    proxy: RecordingProxy, proxied: Coverline
) -> None:
    proxy.script(Step(400, {}, b'{"type":"invalid_request_error","message":"bad"}'))
    with pytest.raises(BadRequestError):
        proxied.bookings.list()
    assert len(proxy.seen) == 1

    proxy.script(*[Step(503, {"Retry-After": "0", "X-Request-Id": "req-503"})] * 4)
    with pytest.raises(ServerError) as caught:
        proxied.bookings.list()
    assert len(proxy.seen) == 4 and caught.value.request_id == "req-503"


async def test_the_async_client_retries_the_same_way(
    proxy: RecordingProxy, partner: Dict[str, Any], client: Coverline
) -> None:
    sandbox = partner["sandbox"]
    async with AsyncCoverline(
        proxy.url, partner["code"], sandbox["api_key"], sandbox["api_secret"], retry=FAST
    ) as proxied:
        proxy.script(Step(503, {"Retry-After": "1"}), Step(502, forward=True))
        booking = await proxied.bookings.instant(
            [ticket_item()], currency="GBP", policyholder=policyholder()
        )
    first, second, _ = proxy.seen
    assert [s.upstream_status for s in proxy.seen] == [None, 200, 409]
    assert first.headers["Date"] != second.headers["Date"]
    assert len({s.headers["x-idempotency-key"] for s in proxy.seen}) == 1
    assert client.bookings.get(booking.id).status == "CONFIRMED"
