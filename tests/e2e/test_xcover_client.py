"""XCover's published Python client (`xcover-python`) against a real `coverline serve`.

Every call of the client must succeed and answer in the shapes of XCover's recorded traffic
(`shared/reference/xcover-wire/*.yaml`): each response has at least the keys of the recorded
response of the same call, recursively, with the same JSON types where both are non-null,
apart from the few keys listed in `NOT_SENT`.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
import yaml
from xcover import XCover, XCoverConfig
from xcover.exceptions import XCoverHttpException

from tests.fixtures.server import REPO_ROOT, CoverlineServer, running_server
from tests.fixtures.signing import signed_headers

pytestmark = pytest.mark.slow

WIRE = Path(
    os.environ.get(
        "COVERLINE_XCOVER_WIRE", REPO_ROOT.parent / "shared" / "reference" / "xcover-wire"
    )
)

# Keys of the recorded responses that Coverline does not send (the rest must be present).
NOT_SENT = frozenset(
    {
        "account_url",  # XCover's customer self-service portal
        "partner",  # XCover's partner profile (logos, e-mail templates, subsidiaries)
        "customer_language",
        # Product content that XCover's list recording carries and the catalogue does not have.
        "quotes[].policy.content.inclusions",
        "quotes[].policy.content.exclusions",
        "quotes[].policy.content.disclaimer_html",
        "quotes[].policy.content.payment_disclaimer",
        "quotes[].policy.content.in_path_disclaimer",
    }
)
# Compared by key set only where the recorded product is the same: benefits differ by product.
NOT_COMPARED = frozenset({"quotes[].benefits"})

SYMBOLS = {"GBP": "£", "AUD": "A$"}
PACKAGE_ID = re.compile(r"^[A-Z0-9]{5}-[A-Z0-9]{5}-INS$")
SERVER_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


# ---------------------------------------------------------------- recorded shapes


@cache
def interactions(name: str) -> list[dict[str, Any]]:
    path = WIRE / f"{name}.yaml"
    if not path.exists():
        pytest.fail(f"XCover recordings not found at {WIRE} (set COVERLINE_XCOVER_WIRE)")
    found: list[dict[str, Any]] = yaml.safe_load(path.read_text())["interactions"]
    return found


def recorded_call(name: str, index: int) -> tuple[str, int]:
    """The method and response status of the `index`-th interaction of `<name>.yaml`."""
    interaction = interactions(name)[index]
    return interaction["request"]["method"], interaction["response"]["status"]["code"]


@cache
def recorded(name: str, index: int) -> Any:
    """The response body of the `index`-th interaction of `xcover-wire/<name>.yaml`."""
    body = interactions(name)[index]["response"]["body"]["string"]
    if isinstance(body, bytes):
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        body = body.decode()
    return json.loads(body)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _is_index_map(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(k.isdigit() for k in value)


def _generic(path: str) -> str:
    """A path inside a list envelope's results is checked like the same path of a booking."""
    return path.removeprefix("results[].")


def shape_problems(actual: Any, expected: Any, path: str = "") -> Iterator[str]:
    """Recorded keys missing from `actual` (or of another JSON type), recursively."""
    where = path or "<body>"
    if _generic(path) in NOT_COMPARED or actual is None or expected is None:
        return
    if _kind(actual) != _kind(expected):
        yield f"{where}: {_kind(actual)} where the recording has {_kind(expected)}"
        return
    if _is_index_map(expected):  # quotes of a quote package: {"0": {...}, "1": {...}}
        template = expected["0"]
        if set(actual) != {str(i) for i in range(len(actual))}:
            yield f"{where}: keys {sorted(actual)} are not 0..n-1"
        for item in actual.values():
            yield from shape_problems(item, template, f"{path}[]")
        return
    if isinstance(expected, dict):
        for key, value in expected.items():
            child = f"{path}.{key}" if path else key
            if _generic(child) in NOT_SENT:
                continue
            if key not in actual:
                yield f"{child}: missing"
                continue
            yield from shape_problems(actual[key], value, child)
        return
    if isinstance(expected, list) and expected and isinstance(expected[0], dict):
        merged: dict[str, Any] = {}
        for item in expected:
            merged.update(item)
        for item in actual:
            yield from shape_problems(item, merged, f"{path}[]")


def assert_recorded(client: RecordingXCover, actual: Any, name: str, index: int) -> None:
    """The last call answered like the recorded one: same method and status, same shape."""
    assert client.last is not None
    assert (client.last.request.method, client.last.status_code) == recorded_call(name, index), (
        client.last.url,
        client.last.text[:500],
    )
    problems = sorted(set(shape_problems(actual, recorded(name, index))))
    assert not problems, f"differs from {name}[{index}]:\n" + "\n".join(problems)


# ---------------------------------------------------------------- values


def money_text(amount: float, currency: str) -> str:
    return f"{SYMBOLS[currency]}{Decimal(str(amount)):,.2f}"


def dec(value: float) -> Decimal:
    return Decimal(str(value))


def assert_money(data: dict[str, Any], name: str, currency: str) -> None:
    assert data[f"{name}_formatted"] == money_text(data[name], currency), (name, data)


def assert_quote(
    quote: dict[str, Any], *, currency: str, status: str, item: dict[str, Any]
) -> None:
    uuid.UUID(quote["id"])
    assert quote["status"] == status
    assert quote["policy_start_date"] == iso_echo(item["policy_start_date"])
    assert quote["policy_end_date"] == iso_echo(item["event_datetime"])
    assert_money(quote, "price", currency)
    assert_money(quote, "cover_amount", currency)
    policy = quote["policy"]
    assert policy["policy_type"] == "event_ticket_protection"
    assert policy["policy_code"] == "MECG0001"
    uuid.UUID(policy["policy_version"])
    assert policy["content"]["title"] == f"Missed Event Cover for {item['event_name']}"
    tax = quote["tax"]
    assert_money(tax, "total_tax", currency)
    assert_money(tax, "total_amount_without_tax", currency)
    assert [t["tax_code"] for t in tax["taxes"]] == ["Admin. fee", "IPT"]
    for entry in tax["taxes"]:
        assert_money(entry, "tax_amount", currency)
    assert dec(tax["total_tax"]) == sum(dec(t["tax_amount"]) for t in tax["taxes"])
    assert dec(quote["price"]) == dec(tax["total_amount_without_tax"]) + dec(tax["total_tax"])
    assert_money(quote["commission"], "total_commission", currency)
    assert_money(quote["commission"], "partner_commission", currency)
    assert SERVER_TIME.match(quote["created_at"]), quote["created_at"]
    if status in {"CONFIRMED"}:
        assert SERVER_TIME.match(quote["confirmed_at"]), quote["confirmed_at"]
    else:
        assert quote["confirmed_at"] is None


def quotes_of(package: dict[str, Any]) -> list[dict[str, Any]]:
    quotes = package["quotes"]
    return [quotes[str(i)] for i in range(len(quotes))] if isinstance(quotes, dict) else quotes


def assert_package(
    package: dict[str, Any],
    *,
    currency: str,
    status: str,
    items: list[dict[str, Any]],
    quote_status: str | None = None,
) -> None:
    assert PACKAGE_ID.match(package["id"]), package["id"]
    assert package["status"] == status
    assert package["currency"] == currency
    quotes = quotes_of(package)
    assert len(quotes) == len(items)
    for quote, item in zip(quotes, items, strict=True):
        assert_quote(quote, currency=currency, status=quote_status or status, item=item)
    assert dec(package["total_price"]) == sum(dec(q["price"]) for q in quotes)
    assert package["total_price"] > 0
    assert_money(package, "total_price", currency)
    assert SERVER_TIME.match(package["created_at"])
    assert SERVER_TIME.match(package["updated_at"])


def assert_booking(
    booking: dict[str, Any],
    *,
    status: str,
    items: list[dict[str, Any]],
    holder: dict[str, Any],
    currency: str = "GBP",
) -> None:
    assert_package(booking, currency=currency, status=status, items=items)
    assert isinstance(booking["quotes"], list)
    assert dec(booking["total_premium"]) + dec(booking["total_tax"]) == dec(booking["total_price"])
    assert_money(booking, "total_premium", currency)
    assert_money(booking, "total_tax", currency)
    for key, value in holder.items():
        assert booking["policyholder"][key] == value, key


# ---------------------------------------------------------------- requests


def iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def iso_echo(sent: str) -> str:
    """How a partner's date-time comes back: same instant and offset, `Z` as `+00:00`."""
    return sent.replace("Z", "+00:00")


def ticket_item(days: int = 1, offset: timedelta = timedelta(0), **changes: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=days)).astimezone(timezone(offset))
    item = {
        "policy_type": "event_ticket_protection",
        "policy_type_version": 1,
        "policy_start_date": iso(start),
        "event_datetime": iso(start + timedelta(days=10, hours=5)),
        "event_name": "Ariana Grande",
        "event_location": "The O2",
        "number_of_tickets": 2,
        "tickets": [{"price": 100}],
        "resale_ticket": False,
        "event_country": "GB",
    }
    item.update(changes)
    return item


def quote_body(*items: dict[str, Any]) -> dict[str, Any]:
    return {
        "request": list(items),
        "currency": "GBP",
        "customer_country": "GB",
        "customer_region": "London",
        "customer_language": "en",
    }


def holder(first_name: str = "Mark", last_name: str = "Mcintosh") -> dict[str, Any]:
    return {
        "first_name": first_name,
        "last_name": last_name,
        "age": 30,
        "email": f"{first_name.lower()}.{last_name.lower()}@example.com",
        "country": "GB",
        "region": None,
        "company": "Barrera Ltd",
    }


def instant_body(item: dict[str, Any], person: dict[str, Any]) -> dict[str, Any]:
    return {"request": [item], "currency": "GBP", "policyholder": person}


def test_shape_checker_reports_missing_and_mistyped_keys() -> None:
    quote = recorded("test_create_booking", 0)
    assert list(shape_problems(quote, quote)) == []
    broken = json.loads(json.dumps(quote))
    del broken["quotes"]["0"]["tax"]["total_tax"]
    broken["quotes"]["2"] = broken["quotes"]["0"]
    broken["total_price"] = "2.01"
    assert sorted(shape_problems(broken, quote)) == [
        "quotes: keys ['0', '2'] are not 0..n-1",
        "quotes[].tax.total_tax: missing",
        "quotes[].tax.total_tax: missing",
        "total_price: str where the recording has number",
    ]

    booking = recorded("test_create_booking", 1)
    broken = json.loads(json.dumps(booking))
    del broken["account_url"]  # listed in NOT_SENT: not a problem
    del broken["quotes"][0]["policy"]["content"]["title"]
    broken["policyholder"]["age"] = None  # null is accepted for any type
    broken["quotes"][0]["benefits"] = [{}]  # not compared
    assert list(shape_problems(broken, booking)) == ["quotes[].policy.content.title: missing"]

    page = recorded("test_list_bookings", 0)
    broken = json.loads(json.dumps(page))
    del broken["results"][0]["policyholder"]["email"]
    assert list(shape_problems(broken, page)) == ["results[].policyholder.email: missing"]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[CoverlineServer]:
    with running_server(tmp_path_factory.mktemp("xcover"), request=request) as started:
        yield started


@pytest.fixture(scope="module")
def partner(server: CoverlineServer) -> dict[str, Any]:
    created = server.create_partner("XCover client partner")
    server.load_catalog()
    return created


class RecordingXCover(XCover):
    """XCover's client, keeping the last HTTP response (the client returns only its JSON)."""

    last: requests.Response | None = None

    def call(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.last = super().call(*args, **kwargs)
        return self.last


def xcover_client(server: CoverlineServer, partner: dict[str, Any], mode: str) -> RecordingXCover:
    return RecordingXCover(
        XCoverConfig(
            partner_code=partner["code"],
            base_url=server.api_url,
            http_timeout=30.0,
            auth_api_key=partner[mode]["api_key"],
            auth_api_secret=partner[mode]["api_secret"],
            auth_algorithm="hmac-sha512",
            headers="(request-target) date",
            retry_total=0,
            retry_backoff_factor=0,
        )
    )


@pytest.fixture(scope="module")
def client(server: CoverlineServer, partner: dict[str, Any]) -> RecordingXCover:
    return xcover_client(server, partner, "sandbox")


# ---------------------------------------------------------------- quotes


def test_create_and_get_quote(client: RecordingXCover) -> None:
    item = ticket_item()
    created = client.create_quote(quote_body(item))
    assert_recorded(client, created, "test_create_booking", 0)
    assert_package(created, currency="GBP", status="RECEIVED", items=[item])
    assert created["errors"] == {}
    assert created["partner_transaction_id"] is None

    fetched = client.get_quote(created["id"])
    assert_recorded(client, fetched, "test_get_quote", 0)
    assert fetched["id"] == created["id"]
    assert fetched["quotes"]["0"]["id"] == created["quotes"]["0"]["id"]
    assert fetched["quotes"]["0"]["price"] == created["quotes"]["0"]["price"]
    assert fetched["security_token"] == created["security_token"]
    assert_package(fetched, currency="GBP", status="RECEIVED", items=[item])


def test_quote_keeps_the_partner_offset(client: RecordingXCover) -> None:
    item = ticket_item(offset=timedelta(hours=1))
    assert item["policy_start_date"].endswith("+01:00")
    created = client.create_quote(quote_body(item))
    quote = created["quotes"]["0"]
    assert quote["policy_start_date"] == item["policy_start_date"]
    assert quote["policy_end_date"] == item["event_datetime"]


def test_update_quote_currency_and_ticket_price(client: RecordingXCover) -> None:
    item = ticket_item()
    created = client.create_quote(quote_body(item))
    quote_id = created["quotes"]["0"]["id"]
    updated = client.update_quote(
        created["id"],
        {"currency": "AUD", "request": [{"quote_id": quote_id, "tickets": [{"price": 50}]}]},
    )
    assert_recorded(client, updated, "test_update_quote", 1)
    assert updated["id"] == created["id"]
    assert updated["quotes"]["0"]["id"] == quote_id
    assert_package(updated, currency="AUD", status="RECEIVED", items=[item])
    assert updated["quotes"]["0"]["price_formatted"].startswith("A$")
    assert updated["total_price_formatted"].startswith("A$")
    # Priced exactly like a new AUD quote for the changed item.
    fresh = client.create_quote(
        {**quote_body({**item, "tickets": [{"price": 50}]}), "currency": "AUD"}
    )
    priced = ("price", "price_formatted", "tax", "commission", "cover_amount", "benefits")
    assert {k: updated["quotes"]["0"][k] for k in priced} == {
        k: fresh["quotes"]["0"][k] for k in priced
    }
    assert updated["quotes"]["0"]["price"] != created["quotes"]["0"]["price"]
    again = client.get_quote(created["id"])
    assert again["currency"] == "AUD"
    assert again["quotes"]["0"]["price"] == updated["quotes"]["0"]["price"]


def test_add_quotes(client: RecordingXCover) -> None:
    first, second = ticket_item(), ticket_item(days=2, event_name="Dua Lipa")
    created = client.create_quote(quote_body(first))
    added = client.add_quotes(created["id"], {"request": [second]})
    assert_recorded(client, added, "test_add_quotes", 1)
    assert_package(added, currency="GBP", status="RECEIVED", items=[first, second])
    assert added["quotes"]["0"]["id"] == created["quotes"]["0"]["id"]
    assert added["quotes"]["1"]["id"] != created["quotes"]["0"]["id"]
    fetched = client.get_quote(created["id"])
    assert_recorded(client, fetched, "test_add_quotes", 2)
    assert [q["id"] for q in quotes_of(fetched)] == [q["id"] for q in quotes_of(added)]
    assert fetched["total_price"] == added["total_price"]


def test_delete_quotes(client: RecordingXCover) -> None:
    first, second = ticket_item(), ticket_item(days=3, event_name="Dua Lipa")
    created = client.create_quote(quote_body(first, second))
    assert_recorded(client, created, "test_delete_quotes", 0)
    assert_package(created, currency="GBP", status="RECEIVED", items=[first, second])
    deleted = client.delete_quotes(
        created["id"], {"quotes": [{"id": created["quotes"]["1"]["id"]}]}
    )
    assert_recorded(client, deleted, "test_delete_quotes", 1)
    assert_package(deleted, currency="GBP", status="RECEIVED", items=[first])
    assert deleted["quotes"]["0"]["id"] == created["quotes"]["0"]["id"]
    assert deleted["total_price"] == created["quotes"]["0"]["price"]
    fetched = client.get_quote(created["id"])
    assert_recorded(client, fetched, "test_delete_quotes", 2)
    assert [q["id"] for q in quotes_of(fetched)] == [created["quotes"]["0"]["id"]]


def test_opt_out(client: RecordingXCover) -> None:
    item = ticket_item()
    created = client.create_quote(quote_body(item))
    assert client.opt_out(created["id"]) is True
    assert client.last is not None
    assert (client.last.request.method, client.last.status_code) == recorded_call("test_opt_out", 1)
    assert client.last.content == b""
    fetched = client.get_quote(created["id"])
    assert_recorded(client, fetched, "test_opt_out", 2)
    assert fetched["status"] == "OPTED_OUT"
    assert fetched["quotes"]["0"]["id"] == created["quotes"]["0"]["id"]
    assert fetched["quotes"]["0"]["status"] == "RECEIVED"
    # An opted-out package cannot be booked any more.
    with pytest.raises(XCoverHttpException, match=r"^4\d\d "):
        client.create_booking(
            created["id"],
            {"quotes": [{"id": created["quotes"]["0"]["id"]}], "policyholder": holder()},
        )


# ---------------------------------------------------------------- bookings


def test_create_and_get_booking(client: RecordingXCover) -> None:
    item = ticket_item()
    created = client.create_quote(quote_body(item))
    person = holder()
    booking = client.create_booking(
        created["id"],
        {"quotes": [{"id": created["quotes"]["0"]["id"]}], "policyholder": person},
    )
    assert_recorded(client, booking, "test_create_booking", 1)
    assert booking["id"] == created["id"]
    assert_booking(booking, status="CONFIRMED", items=[item], holder=person)
    assert booking["quotes"][0]["id"] == created["quotes"]["0"]["id"]
    assert booking["quotes"][0]["price"] == created["quotes"]["0"]["price"]
    assert booking["total_price"] == created["total_price"]
    assert booking["quotes"][0]["can_be_cancelled"] is True

    fetched = client.get_booking(created["id"])
    assert_recorded(client, fetched, "test_get_booking", 1)
    assert_booking(fetched, status="CONFIRMED", items=[item], holder=person)
    assert fetched["quotes"] == booking["quotes"]
    assert fetched["policyholder"] == booking["policyholder"]

    quote = client.get_quote(created["id"])
    assert_recorded(client, quote, "test_create_booking", 2)
    assert quote["status"] == "CONFIRMED"
    assert quote["quotes"]["0"]["status"] == "CONFIRMED"


def test_instant_booking(client: RecordingXCover) -> None:
    item, person = ticket_item(), holder("Melanie", "Martinez")
    booking = client.instant_booking(instant_body(item, person))
    assert_recorded(client, booking, "test_instant_booking", 0)
    assert_booking(booking, status="CONFIRMED", items=[item], holder=person)
    assert client.get_booking(booking["id"])["quotes"] == booking["quotes"]


def test_booking_modification_of_the_phone(client: RecordingXCover) -> None:
    item, person = ticket_item(), holder("Sheri", "Davis")
    booking = client.instant_booking(instant_body(item, person))
    assert booking["policyholder"]["phone"] is None
    changed = client.booking_modification(
        booking["id"], {"policyholder": {"phone": "+380506022279"}}
    )
    assert_recorded(client, changed, "test_booking_modification", 1)
    assert_booking(changed, status="CONFIRMED", items=[item], holder=person)
    assert changed["policyholder"]["phone"] == "+380506022279"
    assert [q["price"] for q in changed["quotes"]] == [q["price"] for q in booking["quotes"]]
    for quote in changed["quotes"]:
        assert quote["price_diff"] == 0
        assert quote["price_diff_formatted"] == "£0.00"
    assert changed["total_price_diff"] == 0
    assert changed["total_price_diff_formatted"] == "£0.00"
    assert client.get_booking(booking["id"])["policyholder"]["phone"] == "+380506022279"


def test_confirm_booking_after_payment(client: RecordingXCover) -> None:
    item, person = ticket_item(), holder("Edgar", "Perry")
    created = client.create_quote(quote_body(item))
    pending = client.create_booking(
        created["id"],
        {
            "quotes": [{"id": created["quotes"]["0"]["id"]}],
            "policyholder": person,
            "require_payment_confirmation": True,
        },
    )
    assert_recorded(client, pending, "test_confirm_booking", 1)
    assert_booking(pending, status="PENDING_PAYMENT", items=[item], holder=person)
    assert client.get_booking(created["id"])["status"] == "PENDING_PAYMENT"

    confirmed = client.confirm_booking(created["id"])
    assert_recorded(client, confirmed, "test_confirm_booking", 2)
    assert_booking(confirmed, status="CONFIRMED", items=[item], holder=person)
    assert confirmed["total_price"] == pending["total_price"]
    assert client.get_booking(created["id"])["status"] == "CONFIRMED"


def test_list_bookings_pages(server: CoverlineServer, partner: dict[str, Any]) -> None:
    # Live mode: only the bookings made here, none of the sandbox ones of the other tests.
    live = xcover_client(server, partner, "live")
    assert live.list_bookings(params={"limit": 1, "offset": 0})["count"] == 0
    ids = [
        live.instant_booking(instant_body(ticket_item(), holder(f"Live{n}", "Booker")))["id"]
        for n in range(3)
    ]
    page = live.list_bookings(params={"limit": 1, "offset": 1})
    assert_recorded(live, page, "test_list_bookings", 0)
    assert page["count"] == 3
    assert [booking["id"] for booking in page["results"]] == [ids[1]]  # newest first
    bookings_path = f"/api/partners/{partner['code']}/bookings/"
    following, preceding = urlsplit(page["next"]), urlsplit(page["previous"])
    assert following.path == bookings_path
    assert parse_qs(following.query) == {"limit": ["1"], "offset": ["2"]}
    assert preceding.path == bookings_path
    assert parse_qs(preceding.query) == {"limit": ["1"]}

    last = live.list_bookings(params={"limit": 1, "offset": 2})
    assert [booking["id"] for booking in last["results"]] == [ids[0]]
    assert last["next"] is None
    assert parse_qs(urlsplit(last["previous"]).query) == {"limit": ["1"], "offset": ["1"]}
    first = live.list_bookings(params={"limit": 2})
    assert [booking["id"] for booking in first["results"]] == [ids[2], ids[1]]
    assert first["previous"] is None
    assert parse_qs(urlsplit(first["next"]).query) == {"limit": ["2"], "offset": ["2"]}


# ---------------------------------------------------------------- authentication


def test_bearer_and_wrong_signature(server: CoverlineServer, partner: dict[str, Any]) -> None:
    path = f"/api/partners/{partner['code']}/bookings/"
    sandbox = partner["sandbox"]
    with httpx.Client(base_url=server.base_url, timeout=30.0) as http:
        bearer_header = {"Authorization": f"Bearer {sandbox['api_secret']}"}
        bearer = http.get(path, headers=bearer_header)
        assert bearer.status_code == 200, bearer.text
        assert set(bearer.json()) == {"count", "next", "previous", "results"}

        signed = signed_headers(sandbox["api_key"], sandbox["api_secret"], "GET", path)
        assert http.get(path, headers=signed).status_code == 200

        wrong = signed_headers(sandbox["api_key"], sandbox["api_secret"] + "x", "GET", path)
        refused = http.get(path, headers=wrong)
        assert refused.status_code == 401
        assert refused.json()["type"] == "authentication_error"
        assert refused.json()["message"]

        other_key = signed_headers(partner["live"]["api_key"], sandbox["api_secret"], "GET", path)
        assert http.get(path, headers=other_key).status_code == 401

        unknown = http.get(path, headers={"Authorization": "Bearer sk_sandbox_unknown"})
        assert unknown.status_code == 401
        assert unknown.json()["type"] == "authentication_error"

        bare = http.get(path, headers={"Authorization": sandbox["api_secret"]})
        assert bare.status_code == 400
        assert bare.json()["message"] == "Invalid bearer token format."

        other_partner = "/api/partners/ZZZZ9/bookings/"
        foreign = http.get(other_partner, headers=bearer_header)
        assert foreign.status_code == 404, foreign.text


def test_booking_modification_quote_workflow(client: RecordingXCover) -> None:
    booking = client.instant_booking(instant_body(ticket_item(), holder("Marcia", "Hughes")))
    qid = booking["quotes"][0]["id"]
    priced = client.booking_modification_quote(
        booking["id"],
        {"quotes": [{"id": qid, "update_fields": {"tickets": [{"price": 100500}]}}]},
    )
    assert_recorded(client, priced, "test_booking_modification_quote_workflow", 1)
    assert priced["update_id"].endswith("-UPD")
    assert priced["total_price_diff"] > 0
    unchanged = client.get_booking(booking["id"])
    assert_recorded(client, unchanged, "test_booking_modification_quote_workflow", 2)
    assert unchanged["total_price"] == booking["total_price"]
    confirmed = client.confirm_booking_modification(booking["id"], priced["update_id"])
    assert_recorded(client, confirmed, "test_booking_modification_quote_workflow", 3)
    assert confirmed["total_price"] == priced["total_price"]
    after = client.get_booking(booking["id"])
    assert_recorded(client, after, "test_booking_modification_quote_workflow", 4)
    assert after["total_price"] == priced["total_price"]


def test_cancel_booking_immediately(client: RecordingXCover) -> None:
    booking = client.instant_booking(instant_body(ticket_item(), holder("Nancy", "Wade")))
    cancelled = client.cancel_booking(booking["id"])
    assert_recorded(client, cancelled, "test_cancel_booking", 1)
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["total_refund"] == booking["total_price"]  # within cooling-off
    after = client.get_booking(booking["id"])
    assert_recorded(client, after, "test_cancel_booking", 2)
    assert after["status"] == "CANCELLED"
    assert after["quotes"][0]["can_be_cancelled"] is False


def test_cancel_booking_with_confirmation(client: RecordingXCover) -> None:
    booking = client.instant_booking(instant_body(ticket_item(), holder("Hector", "Solis")))
    preview = client.cancel_booking(booking["id"], {"preview": True})
    assert_recorded(client, preview, "test_cancel_booking_with_confirmation", 1)
    assert preview["cancellation_id"].endswith("-CCL")
    still = client.get_booking(booking["id"])
    assert_recorded(client, still, "test_cancel_booking_with_confirmation", 2)
    assert still["status"] == "CONFIRMED"
    done = client.confirm_booking_cancellation(booking["id"], preview["cancellation_id"])
    assert_recorded(client, done, "test_cancel_booking_with_confirmation", 3)
    assert done["total_refund"] == preview["total_refund"]
    after = client.get_booking(booking["id"])
    assert_recorded(client, after, "test_cancel_booking_with_confirmation", 4)
    assert after["status"] == "CANCELLED"


def test_get_instalments(client: RecordingXCover) -> None:
    start = datetime.now(UTC) + timedelta(hours=17)
    item = ticket_item(
        policy_start_date=iso(start), event_datetime=iso(start + timedelta(hours=12))
    )
    created = client.create_quote(quote_body(item))
    assert_recorded(client, created, "test_get_instalments", 0)
    qid = created["quotes"]["0"]["id"]
    booking = client.create_booking(
        created["id"],
        {
            "quotes": [{"id": qid, "instalment_plan": "1year-monthly"}],
            "policyholder": holder("Courtney", "Dillon"),
        },
    )
    assert_recorded(client, booking, "test_get_instalments", 1)
    schedule = client.get_instalments(booking["id"])
    assert_recorded(client, schedule, "test_get_instalments", 2)
    assert len(schedule["quotes"][0]["payment_schedule"]) == 12
    paid = client.update_instalment_payment_status(
        booking["id"],
        {
            "quotes": [
                {
                    "id": qid,
                    "payment_attempted_date": item["policy_start_date"],
                    "payment_status": "PAID",
                    "instalment_number": 2,
                }
            ]
        },
    )
    assert paid is True
    assert (client.last.request.method, client.last.status_code) == recorded_call(
        "test_get_instalments", 3
    )
    second = client.get_instalments(booking["id"])["quotes"][0]["payment_schedule"][1]
    assert second["status"] == "PAID"


def gadget_body() -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(hours=1)
    return {
        "request": [
            {
                "policy_type": "gadget_cover",
                "policy_type_version": 1,
                "policy_start_date": iso(start),
                "device_type": "phone",
                "device_make": "Tecno",
                "device_model": "Camon 30",
                "device_value": 450000,
            }
        ],
        "currency": "NGN",
        "customer_country": "NG",
        "policyholder": {**holder("Ọláolúwa", "Adéwálé"), "country": "NG"},
    }


def test_renewal_quote_confirm_and_opt_out(client: RecordingXCover) -> None:
    booking = client.instant_booking(gadget_body())
    quote = booking["quotes"][0]
    assert quote["is_renewable"] is True
    first = quote["next_renewal"]
    quoted = client.quote_for_renewal(booking["id"])
    assert quoted["renewal_id"] == first["id"]
    assert quoted["renewal"]["policy_start_date"] == quote["policy_end_date"]
    renewed = client.renewal_confirmation(booking["id"], quoted["renewal_id"])
    assert renewed["renewal"]["paid_on"] is not None
    assert renewed["quotes"][0]["total_renewed_times"] == 1
    assert renewed["quotes"][0]["next_renewal"]["id"] != first["id"]
    out = client.renewal_opt_out(booking["id"])
    assert out["quotes"][0]["next_renewal"] is None
    assert client.get_booking(booking["id"])["quotes"][0]["next_renewal"] is None
