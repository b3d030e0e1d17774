"""Managing webhook endpoints through the partner API, and recovering deliveries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coverline.runtime import Services
from coverline.webhooks import service
from coverline.webhooks.dispatcher import Dispatcher
from tests.conftest import PartnerFixture, partner_state
from tests.fixtures.payloads import instant_booking_request
from tests.fixtures.receiver import Answer, Receiver
from tests.fixtures.webhooks import add_endpoint
from tests.webhooks.test_delivery import settle


async def test_create_list_get_patch_delete(partner: PartnerFixture) -> None:
    created = await add_endpoint(
        partner.sandbox, "https://hooks.example.com/coverline", events=["BOOKING_CREATED"]
    )
    assert created["id"].startswith("whe_")
    assert created["enabled"] is True
    assert created["mode"] == "sandbox"
    assert created["events"] == ["BOOKING_CREATED"]
    assert created["key"].startswith("whk_") and created["secret"].startswith("whsec_")
    listed = (await partner.sandbox.call("GET", "webhooks/")).json()
    assert listed["count"] == 1
    assert "secret" not in listed["results"][0]
    fetched = (await partner.sandbox.call("GET", f"webhooks/{created['id']}/")).json()
    assert fetched == listed["results"][0]
    secret = (await partner.sandbox.call("GET", f"webhooks/{created['id']}/secret")).json()
    assert secret["secret"] == created["secret"]

    # The event filter names XCover events: a MyCover endpoint needs a filter of its own.
    mismatch = await partner.sandbox.call(
        "PATCH", f"webhooks/{created['id']}/", {"format": "mycover"}
    )
    assert mismatch.status_code == 422
    assert list(mismatch.json()["errors"]) == ["events"]
    patched = await partner.sandbox.call(
        "PATCH",
        f"webhooks/{created['id']}/",
        {"enabled": False, "format": "mycover", "events": None},
    )
    assert patched.status_code == 200
    body = patched.json()
    assert (body["enabled"], body["format"], body["signature"]) == (False, "mycover", "mycover")
    assert body["events"] is None
    deleted = await partner.sandbox.call("DELETE", f"webhooks/{created['id']}/")
    assert deleted.status_code == 204
    assert (await partner.sandbox.call("GET", f"webhooks/{created['id']}/")).status_code == 404
    assert (await partner.sandbox.call("GET", "webhooks/")).json()["count"] == 0


async def test_delivery_log_offset_past_any_database_integer_is_422(
    partner: PartnerFixture,
) -> None:
    endpoint = await add_endpoint(partner.sandbox, "https://hooks.example.com/coverline")
    path = f"webhooks/{endpoint['id']}/deliveries/"
    too_far = await partner.sandbox.call("GET", path, params={"offset": 10**25})
    assert too_far.status_code == 422
    assert too_far.json()["errors"] == {
        "offset": ["Input should be less than or equal to 2147483647"]
    }
    last = await partner.sandbox.call("GET", path, params={"offset": 2**31 - 1})
    assert last.status_code == 200
    assert last.json() == {"count": 0, "results": []}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://example..com/"}, "url"),
        ({"url": f"https://{'a' * 64}.example.com/"}, "url"),
        ({"url": "http://example.com:0/"}, "url"),
        ({"url": "https://example.com", "events": ["BOOKING_EXPLODED"]}, "events"),
        ({"url": "https://example.com", "format": "json"}, "format"),
        ({"url": "https://example.com", "signature": "md5"}, "signature"),
        ({"url": "https://example.com", "retry_schedule": [0]}, "retry_schedule"),
        ({"url": "https://example.com", "retry_schedule": [1] * 9}, "retry_schedule"),
        ({"url": "https://example.com", "timeout_seconds": 60}, "timeout_seconds"),
        ({"url": "https://example.com", "colour": "red"}, "colour"),
        # Longer than the column once stored (2,048), also only once percent-encoded.
        ({"url": "https://example.com/" + "a" * 2100}, "url"),
        ({"url": "https://example.com/" + "é" * 400}, "url"),
    ],
)
async def test_invalid_endpoints_are_refused(
    services: Services, partner: PartnerFixture, body: dict[str, Any], errors: str
) -> None:
    before = await partner_state(services, partner.id)
    response = await partner.sandbox.call("POST", "webhooks/", body)
    assert response.status_code == 422, response.text
    assert list(response.json()["errors"]) == [errors]
    assert (await partner.sandbox.call("GET", "webhooks/")).json()["count"] == 0
    assert await partner_state(services, partner.id) == before


async def test_a_url_too_long_is_refused_by_a_patch_too(
    services: Services, partner: PartnerFixture
) -> None:
    created = await partner.sandbox.call("POST", "webhooks/", {"url": "https://example.com/"})
    before = await partner_state(services, partner.id)
    for url in ("https://example.com/" + "a" * 2100, "https://example.com/" + "é" * 400):
        response = await partner.sandbox.call(
            "PATCH", f"webhooks/{created.json()['id']}/", {"url": url}
        )
        assert (response.status_code, response.json()["errors"]) == (
            422,
            {"url": ["A URL of at most 2048 characters (percent-encoded)."]},
        )
    assert await partner_state(services, partner.id) == before
    # At the limit, it is stored whole.
    at_limit = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    kept = await partner.sandbox.call(
        "PATCH", f"webhooks/{created.json()['id']}/", {"url": at_limit}
    )
    assert (kept.status_code, kept.json()["url"]) == (200, at_limit)


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2030-01-01T00:00:00"]
)
async def test_recover_refuses_a_time_out_of_range_or_without_offset(
    services: Services, partner: PartnerFixture, since: str
) -> None:
    endpoint = await add_endpoint(partner.sandbox, "https://hooks.example/in")
    before = await partner_state(services, partner.id)
    response = await partner.sandbox.call(
        "POST", f"webhooks/{endpoint['id']}/recover", {"since": since}
    )
    assert response.status_code == 422, response.text
    assert list(response.json()["errors"]) == ["since"]
    assert await partner_state(services, partner.id) == before


async def test_endpoints_are_isolated(
    partner: PartnerFixture, other_partner: PartnerFixture
) -> None:
    endpoint = await add_endpoint(partner.sandbox, "https://hooks.example.com/a")
    path = f"webhooks/{endpoint['id']}/"
    for client in (partner.live, other_partner.sandbox):
        for method, suffix, body in (
            ("GET", "", None),
            ("GET", "secret", None),
            ("PATCH", "", {"enabled": False}),
            ("DELETE", "", None),
            ("POST", "rotate_secret", {}),
            ("POST", "test", {}),
            ("GET", "deliveries/", None),
            ("POST", "recover", {"since": "2020-01-01T00:00:00Z"}),
        ):
            response = await client.call(method, path + suffix, body)
            assert response.status_code == 404, (method, suffix, response.text)
        assert (await client.call("GET", "webhooks/")).json()["count"] == 0
    still = (await partner.sandbox.call("GET", path)).json()
    assert still["enabled"] is True


async def test_test_event_reaches_the_endpoint(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, events=["BOOKING_CANCELLED"])
    response = await partner.sandbox.call("POST", f"webhooks/{endpoint['id']}/test", {})
    assert response.status_code == 202
    assert response.json()["event"] == "WEBHOOK_TEST"
    (message,) = await receiver.wait_for(1)
    assert message.json()["event"] == "WEBHOOK_TEST"
    assert message.json()["payload"]["endpoint_id"] == endpoint["id"]
    assert message.headers["webhook-id"] == response.json()["id"]


async def test_redeliver_and_recover(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, retry_schedule=[])
    receiver.default = Answer(status=500)
    since = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(3):
        await partner.sandbox.call("POST", "instant_booking/", instant_booking_request())
    await receiver.wait_for(3)
    detail = await settle(partner, endpoint, "failed")
    failed = (
        await partner.sandbox.call(
            "GET", f"webhooks/{endpoint['id']}/deliveries/", params={"status": "failed"}
        )
    ).json()
    assert failed["count"] == 3

    receiver.default = Answer(status=200)
    one = await partner.sandbox.call(
        "POST", f"webhooks/{endpoint['id']}/deliveries/{detail['id']}/redeliver", {}
    )
    assert one.status_code == 202
    await receiver.wait_for(4)
    again = await partner.sandbox.call(
        "POST", f"webhooks/{endpoint['id']}/deliveries/{detail['id']}/redeliver", {}
    )
    assert again.status_code in {202, 422}

    recovered = await partner.sandbox.call(
        "POST", f"webhooks/{endpoint['id']}/recover", {"since": since.isoformat()}
    )
    assert recovered.status_code == 202
    assert recovered.json() == {"recovered": 2}
    await receiver.wait_for(6)
    for _ in range(100):
        succeeded = (
            await partner.sandbox.call(
                "GET", f"webhooks/{endpoint['id']}/deliveries/", params={"status": "succeeded"}
            )
        ).json()["count"]
        if succeeded == 3:
            break
        await asyncio.sleep(0.05)
    assert succeeded == 3
    future = await partner.sandbox.call(
        "POST",
        f"webhooks/{endpoint['id']}/recover",
        {"since": (datetime.now(UTC) + timedelta(hours=1)).isoformat()},
    )
    assert future.json() == {"recovered": 0}


async def test_endpoints_per_partner_and_mode_are_bounded(
    services: Services, partner: PartnerFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At most MAX_ENDPOINTS (100; 2 here) in each mode: a list, a dashboard and the health
    queries over them stay small. A deleted one makes room."""
    monkeypatch.setattr(service, "MAX_ENDPOINTS", 2)
    made = [
        (await partner.sandbox.call("POST", "webhooks/", {"url": f"https://example.com/{i}"}))
        for i in range(2)
    ]
    assert [response.status_code for response in made] == [201, 201]
    before = await partner_state(services, partner.id)
    third = await partner.sandbox.call("POST", "webhooks/", {"url": "https://example.com/3"})
    assert (third.status_code, third.json()["errors"]) == (
        422,
        {
            "non_field_errors": [
                "A partner has at most 2 webhook endpoints in each mode; delete one first."
            ]
        },
    )
    assert await partner_state(services, partner.id) == before
    live = await partner.live.call("POST", "webhooks/", {"url": "https://example.com/live"})
    assert live.status_code == 201
    deleted = await partner.sandbox.call("DELETE", f"webhooks/{made[0].json()['id']}/")
    assert deleted.status_code == 204
    again = await partner.sandbox.call("POST", "webhooks/", {"url": "https://example.com/3"})
    assert again.status_code == 201
