"""Each signature scheme, verified at a real receiver the way the partner's docs verify it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import subprocess
import textwrap
from pathlib import Path
from urllib.parse import unquote

from standardwebhooks import Webhook

from coverline.webhooks.dispatcher import Dispatcher
from coverline.webhooks.formats import js_json
from tests.conftest import PartnerFixture
from tests.fixtures.payloads import instant_booking_request, policyholder
from tests.fixtures.receiver import Receiver
from tests.fixtures.webhooks import add_endpoint

NON_ASCII_NAME = ("Ọláolúwa", "Adéwálé")


async def book(partner: PartnerFixture, first: str = "Mark", last: str = "Mcintosh") -> dict:
    body = instant_booking_request(
        policyholder=policyholder(first_name=first, last_name=last, phone="+2349162753630")
    )
    response = await partner.sandbox.call("POST", "instant_booking/", body)
    assert response.status_code == 200
    return dict(response.json())


def mycover_python_snippet(req_body: object, secret_key: str, header: str) -> bool:
    """The Python sample of the MyCover documentation, as written there."""
    json_payload = json.dumps(req_body, separators=(",", ":"))
    secret_key_bytes = secret_key.encode()
    hmac_obj = hmac.new(secret_key_bytes, digestmod=hashlib.sha512)
    hmac_obj.update(json_payload.encode())
    signature = hmac_obj.hexdigest()
    return header == signature


NODE_SNIPPET = textwrap.dedent(
    """
    const crypto = require("crypto");
    const raw = require("fs").readFileSync(0, "utf8");
    const input = JSON.parse(raw);
    const req = { body: JSON.parse(input.body), headers: input.headers };
    const secretKey = input.secret;
    let verified = false;
    const res = { send: (status) => { verified = status === 200; } };
    // The JavaScript sample of the MyCover documentation, as written there:
    const signature = crypto
    .createHmac("sha512", secretKey)
    .update(JSON.stringify(req.body))
    .digest("hex");
    if (req.headers['x-mycoverai-signature'] === signature) {
    const event = req.body;
    // Do something with event - that will not take long
    // Return Ok
    res.send(200);
    }
    console.log(JSON.stringify({ verified, restringified: JSON.stringify(req.body) }));
    """
)


def node_verifies(body: bytes, headers: dict[str, str], secret: str, tmp: Path) -> dict:
    script = tmp / "verify.js"
    script.write_text(NODE_SNIPPET)
    lowered = {k.lower(): v for k, v in headers.items()}
    document = json.dumps({"body": body.decode(), "headers": lowered, "secret": secret})
    done = subprocess.run(
        ["node", str(script)], input=document, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


async def test_mycover_scheme_python_and_node(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher, tmp_path: Path
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, format="mycover")
    assert endpoint["signature"] == "mycover"
    assert endpoint["secret"] == partner.sandbox.credential.api_secret
    ascii_booking = await book(partner)
    unicode_booking = await book(partner, *NON_ASCII_NAME)
    received = await receiver.wait_for(2)
    by_reference = {r.json()["data"]["reference"]: r for r in received}
    secret = partner.sandbox.credential.api_secret

    plain = by_reference[ascii_booking["id"]]
    assert plain.json()["event"] == "purchase.successful"
    assert mycover_python_snippet(plain.json(), secret, plain.headers["x-mycoverai-signature"])
    assert node_verifies(plain.body, plain.headers, secret, tmp_path)["verified"] is True

    accented = by_reference[unicode_booking["id"]]
    assert "Ọláolúwa".encode() in accented.body  # sent unescaped, as JSON.stringify writes it
    result = node_verifies(accented.body, accented.headers, secret, tmp_path)
    assert result["verified"] is True
    assert result["restringified"].encode() == accented.body
    wrong = node_verifies(accented.body, accented.headers, secret + "x", tmp_path)
    assert wrong["verified"] is False


async def test_mycover_purchase_payload(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    await add_endpoint(partner.sandbox, receiver.url, format="mycover")
    booking = await book(partner, *NON_ASCII_NAME)
    (message,) = await receiver.wait_for(1)
    data = message.json()["data"]
    quote = booking["quotes"][0]
    assert message.json()["event"] == "purchase.successful"
    assert list(data) == [
        "id",
        "amount",
        "status",
        "reference",
        "customer",
        "product_id",
        "created_at",
        "updated_at",
        "policy_expiry_date",
    ]
    assert data["id"] == quote["id"]
    assert data["amount"] == 2.01
    assert data["status"] == "successful"
    assert data["reference"] == booking["id"]
    assert data["product_id"] == quote["policy"]["policy_version"]
    assert data["customer"]["first_name"] == "Ọláolúwa"
    assert data["customer"]["last_name"] == "Adéwálé"
    assert data["customer"]["phone"] == "+2349162753630"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["created_at"])


async def test_xcover_scheme(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url)
    assert (endpoint["format"], endpoint["signature"]) == ("xcover", "xcover")
    booking = await book(partner)
    (message,) = await receiver.wait_for(1)
    # As XCover's documentation verifies: read the algorithm from the header, HMAC the date.
    header = message.headers["Authorization"]
    params = dict(re.findall(r'(\w+)="([^"]*)"', header))
    assert params["keyId"] == endpoint["key"] == message.headers["X-Api-Key"]
    assert params["algorithm"] == "hmac-sha256" and params["headers"] == "date"
    digest = hmac.new(
        endpoint["secret"].encode(),
        f"date: {message.headers['Date']}".encode(),
        getattr(hashlib, params["algorithm"].split("-")[1]),
    ).digest()
    assert base64.b64decode(unquote(params["signature"])) == digest
    body = message.json()
    assert body["event"] == "BOOKING_CREATED"
    assert body["payload"] == {
        "id": booking["id"],
        "status": "CONFIRMED",
        "currency": "GBP",
        "total_price": 2.01,
        "total_price_formatted": "£2.01",
        "partner_transaction_id": None,
        "quotes": [
            {
                "id": booking["quotes"][0]["id"],
                "policy_start_date": booking["quotes"][0]["policy_start_date"],
                "policy_end_date": booking["quotes"][0]["policy_end_date"],
                "status": "CONFIRMED",
                "price": 2.01,
                "price_formatted": "£2.01",
                "policy": {
                    "policy_type": "event_ticket_protection",
                    "policy_name": "Missed Event Cover (Generic)",
                    "policy_version": booking["quotes"][0]["policy"]["policy_version"],
                },
                "duration": "10 00:00:00",
                "total_renewed_times": 0,
            }
        ],
    }


async def test_standard_scheme_and_rotation(
    partner: PartnerFixture, receiver: Receiver, dispatcher: Dispatcher
) -> None:
    endpoint = await add_endpoint(partner.sandbox, receiver.url, signature="standard")
    old_secret = endpoint["secret"]
    assert old_secret.startswith("whsec_")
    await book(partner, *NON_ASCII_NAME)
    (first,) = await receiver.wait_for(1)
    assert Webhook(old_secret).verify(first.body, first.headers)["event"] == "BOOKING_CREATED"
    assert first.headers["webhook-id"].startswith("msg_")

    rotated = await partner.sandbox.call("POST", f"webhooks/{endpoint['id']}/rotate_secret", {})
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != old_secret
    await book(partner)
    _, second = await receiver.wait_for(2)
    assert len(second.headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new_secret).verify(second.body, second.headers)
    assert Webhook(old_secret).verify(second.body, second.headers)
    tampered = second.body.replace(b"CONFIRMED", b"CANCELLED")
    try:
        Webhook(new_secret).verify(tampered, second.headers)
    except Exception as exc:
        assert "signature" in str(exc).lower()
    else:
        raise AssertionError("a tampered body verified")


def test_mycover_body_bytes_are_javascripts_for_numbers_keys_and_surrogates() -> None:
    """What JSON.stringify(JSON.parse(body)) gives back in Node (checked there by
    tests/fuzz/test_js_json.py), where orjson alone wrote other bytes or refused."""
    document = {
        "b": 1,
        "10": "ten",
        "2": "two",
        "02": "not an index",
        "large": [1e16, 1.2345678901234568e20, 1e21],
        "integers": [2**53 + 1, 2**64 + 1, 10**30],
        "text": ["\ud800", "\ud83d\ude00"],
    }
    assert js_json(document) == (
        b'{"2":"two","10":"ten","b":1,"02":"not an index",'
        b'"large":[10000000000000000,123456789012345680000,1e+21],'
        b'"integers":[9007199254740992,18446744073709552000,1e+30],'
        b'"text":["\\ud800","\xf0\x9f\x98\x80"]}'
    )
