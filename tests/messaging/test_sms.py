"""SMS at local servers that speak Twilio's and Africa's Talking's APIs (paths,
authentication, form fields as their public documentation gives them), and the arithmetic
of SMS texts."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from coverline.messaging.dispatcher import MessageDispatcher, Transports
from coverline.messaging.sms import (
    TWILIO_MAX,
    TwilioProvider,
    e164,
    is_gsm7,
    split_parts,
    units,
)
from coverline.runtime import Services
from tests.conftest import PartnerFixture
from tests.messaging.conftest import (
    AT_API_KEY,
    AT_USERNAME,
    NAME_FIRST,
    TWILIO_SID,
    TWILIO_TOKEN,
    SmsServer,
    africastalking_provider,
    configure,
    customer_email,
    gadget_request,
    messages_of,
    running_dispatcher,
    sell,
    twilio_provider,
    wait_until,
)

PHONE = "+2348031234567"


@pytest.fixture
async def twilio_dispatcher(
    services: Services, twilio: SmsServer
) -> AsyncIterator[MessageDispatcher]:
    transports = Transports(sms=twilio_provider(twilio))
    async with running_dispatcher(services, transports) as dispatcher:
        yield dispatcher


@pytest.fixture
async def at_dispatcher(
    services: Services, africastalking: SmsServer
) -> AsyncIterator[MessageDispatcher]:
    transports = Transports(sms=africastalking_provider(africastalking))
    async with running_dispatcher(services, transports) as dispatcher:
        yield dispatcher


async def sms_partner(partner: PartnerFixture, **settings: Any) -> None:
    await configure(
        partner.sandbox,
        channels=["sms"],
        events=["purchase"],
        send_in_sandbox=True,
        **settings,
    )


def _final(rows: list[Any]) -> bool:
    return bool(rows) and all(m.status in {"sent", "failed"} for m in rows)


async def test_twilio_an_error_then_success_is_sent_once(
    services: Services,
    partner: PartnerFixture,
    twilio: SmsServer,
    twilio_dispatcher: MessageDispatcher,
) -> None:
    await sms_partner(partner)
    twilio.script.append((500, {"code": 20500, "message": "Internal Server Error", "status": 500}))
    booking = await sell(partner.sandbox, gadget_request(customer_email()))
    rows = await wait_until(services, booking["id"], _final)
    message = rows[0]
    assert (message.channel, message.status, message.attempts) == ("sms", "sent", 2)
    assert message.provider == "twilio"
    assert message.provider_message_id == f"SM{1:032x}"

    assert len(twilio.requests) == 2
    token = base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
    for request in twilio.requests:
        assert request.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
        assert request.headers["Authorization"] == f"Basic {token}"
        assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
        assert request.form == {"To": PHONE, "From": "+15005550006", "Body": message.text}
    assert message.text.startswith(f"Partner {partner.code}: Hi {NAME_FIRST}, your cover")
    assert booking["total_price_formatted"] in message.text
    assert "₦" in message.text
    await asyncio.sleep(0.2)
    assert len(twilio.requests) == 2


async def test_twilio_refusing_the_number_is_not_retried(
    services: Services,
    partner: PartnerFixture,
    twilio: SmsServer,
    twilio_dispatcher: MessageDispatcher,
) -> None:
    await sms_partner(partner)
    twilio.script.append(
        (400, {"code": 21211, "message": "The 'To' number is not a valid phone number."})
    )
    booking = await sell(partner.sandbox, gadget_request(customer_email()))
    rows = await wait_until(services, booking["id"], _final)
    assert (rows[0].status, rows[0].attempts) == ("failed", 1)
    assert rows[0].error == (
        "Twilio answered 400 (error 21211): The 'To' number is not a valid phone number."
    )
    assert len(twilio.requests) == 1


async def test_a_providers_nul_is_stored_as_a_replacement_and_sends_once(
    services: Services,
    partner: PartnerFixture,
    twilio: SmsServer,
    twilio_dispatcher: MessageDispatcher,
) -> None:
    """PostgreSQL stores no U+0000: a provider's id or error with one is stored with U+FFFD
    (the result used to fail to record, and the customer to get the SMS again and again)."""
    await sms_partner(partner)
    twilio.script.append((201, {"sid": "SM\u0000x", "status": "queued"}))
    twilio.script.append((400, {"code": 21211, "message": "bad\u0000number"}))
    sent = await sell(partner.sandbox, gadget_request(customer_email()))
    refused = await sell(partner.sandbox, gadget_request(customer_email()))
    (one,) = await wait_until(services, sent["id"], _final)
    (other,) = await wait_until(services, refused["id"], _final)
    assert (one.status, one.attempts, one.provider_message_id) == ("sent", 1, "SM\ufffdx")
    assert (other.status, other.attempts) == ("failed", 1)
    assert other.error == "Twilio answered 400 (error 21211): bad\ufffdnumber"
    await asyncio.sleep(0.3)
    assert len(twilio.requests) == 2


async def test_an_answer_that_is_not_utf8_is_an_error_and_retried(
    services: Services,
    partner: PartnerFixture,
    africastalking: SmsServer,
    at_dispatcher: MessageDispatcher,
) -> None:
    await sms_partner(partner)
    africastalking.script.append((500, b"down \xff\xfe"))
    booking = await sell(partner.sandbox, gadget_request(customer_email()))
    rows = await wait_until(services, booking["id"], _final)
    assert (rows[0].status, rows[0].attempts) == ("sent", 2)
    # The refused first part, then every part once.
    parts = rows[0].provider_message_id.split(",")
    assert len(africastalking.requests) == 1 + len(parts)


async def test_twilio_uses_the_partners_sender_id(
    services: Services,
    partner: PartnerFixture,
    twilio: SmsServer,
    twilio_dispatcher: MessageDispatcher,
) -> None:
    await sms_partner(partner, sms_sender="ShopNG")
    booking = await sell(partner.sandbox, gadget_request(customer_email()))
    await wait_until(services, booking["id"], _final)
    assert twilio.requests[0].form["From"] == "ShopNG"


async def test_africastalking_splits_and_resumes_after_an_error(
    services: Services,
    partner: PartnerFixture,
    africastalking: SmsServer,
    at_dispatcher: MessageDispatcher,
) -> None:
    await sms_partner(partner)
    # The text needs UCS-2 (Ọ, ₦): parts of at most 70 characters, each its own SMS. The
    # second part fails once; the first is not sent again.
    africastalking.script.extend([africastalking.success({"to": PHONE}), (502, "Bad Gateway")])
    booking = await sell(partner.sandbox, gadget_request(customer_email()))
    rows = await wait_until(services, booking["id"], _final)
    parts = split_parts(rows[0].text)
    assert len(parts) >= 3
    message = rows[0]
    assert (message.status, message.attempts, message.parts_sent) == ("sent", 2, len(parts))
    sent = [request.form["message"] for request in africastalking.requests]
    assert sent == [parts[0], parts[1], *parts[1:]]
    assert all(units(part, is_gsm7(part)) <= 70 for part in parts)
    assert parts[0].startswith(f"(1/{len(parts)}) Partner {partner.code}: Hi {NAME_FIRST}")
    for request in africastalking.requests:
        assert request.path == "/version1/messaging"
        assert request.headers["apiKey"] == AT_API_KEY
        assert request.headers["Accept"] == "application/json"
        assert request.form["username"] == AT_USERNAME
        assert request.form["to"] == PHONE
        assert request.form["from"] == "COVERLINE"
    ids = (message.provider_message_id or "").split(",")
    assert len(ids) == len(parts) and all(i.startswith("ATXid_") for i in ids)
    # Split at spaces, and inside a word (the certificate link) only when it is longer than a part.
    rejoined = "".join(p.split(") ", 1)[1] for p in parts)
    assert rejoined.replace(" ", "") == message.text.replace(" ", "").replace("\n", "")


async def test_africastalking_invalid_number_fails_at_once(
    services: Services,
    partner: PartnerFixture,
    africastalking: SmsServer,
    at_dispatcher: MessageDispatcher,
) -> None:
    await sms_partner(partner, sms_sender="ShopNG")
    africastalking.script.append(
        (
            201,
            {
                "SMSMessageData": {
                    "Message": "Sent to 0/1 Total Cost: 0",
                    "Recipients": [
                        {
                            "statusCode": 403,
                            "number": PHONE,
                            "status": "InvalidPhoneNumber",
                            "cost": "0",
                            "messageId": "None",
                        }
                    ],
                }
            },
        )
    )
    booking = await sell(partner.sandbox, gadget_request(customer_email()))
    rows = await wait_until(services, booking["id"], _final)
    assert (rows[0].status, rows[0].attempts) == ("failed", 1)
    assert rows[0].error == "Africa's Talking status 403: InvalidPhoneNumber"
    assert africastalking.requests[0].form["from"] == "ShopNG"


async def test_an_sms_failing_every_time_is_failed_after_the_configured_attempts(
    services: Services,
    partner: PartnerFixture,
    africastalking: SmsServer,
    at_dispatcher: MessageDispatcher,
) -> None:
    await sms_partner(partner)
    africastalking.script.extend([(500, {"error": "down"})] * 3)
    booking = await sell(partner.sandbox, gadget_request(customer_email()))
    rows = await wait_until(services, booking["id"], _final)
    assert (rows[0].status, rows[0].attempts, rows[0].parts_sent) == ("failed", 3, 0)
    assert len(africastalking.requests) == 3


async def test_no_phone_no_sms(
    services: Services, partner: PartnerFixture, at_dispatcher: MessageDispatcher
) -> None:
    await configure(partner.sandbox, channels=["email", "sms"], events=["purchase"])
    booking = await sell(partner.sandbox, gadget_request(customer_email(), phone=None))
    rows = await messages_of(services, booking["id"])
    assert [m.channel for m in rows] == ["email"]


# ---------------------------------------------------------------------------- the arithmetic


def test_numbers_in_e164() -> None:
    assert e164("+234 803 123 4567") == PHONE
    assert e164("0803 123 4567", "NG") == PHONE
    assert e164("07911 123456", "gb") == "+447911123456"
    assert e164("12345", "NG") is None
    assert e164("not a number") is None
    assert e164(None) is None


def test_gsm7_and_ucs2_lengths() -> None:
    assert is_gsm7("Hello £5 @home è")
    assert not is_gsm7("₦5,000")
    assert not is_gsm7(NAME_FIRST)
    assert units("a€[]", True) == 7  # € [ ] come from the extension table
    assert units("a😀", False) == 3  # an emoji is two UTF-16 code units


def test_one_sms_is_not_split() -> None:
    assert split_parts("x" * 160) == ["x" * 160]
    assert split_parts("Ọ" * 70) == ["Ọ" * 70]


def test_long_texts_are_split_at_words_and_numbered() -> None:
    text = " ".join(f"word{n:03d}" for n in range(60))  # 479 GSM-7 characters
    parts = split_parts(text)
    assert len(parts) == 4
    assert [p.split(" ", 1)[0] for p in parts] == ["(1/4)", "(2/4)", "(3/4)", "(4/4)"]
    assert all(len(p) <= 160 for p in parts)
    assert " ".join(p.split(" ", 1)[1] for p in parts) == text
    ucs2 = split_parts(f"{NAME_FIRST} " * 30)
    assert all(units(p, False) <= 70 for p in ucs2)
    extension = split_parts("€" * 100)  # 200 septets
    assert all(units(p, True) <= 160 for p in extension)
    assert "".join(p.split(" ", 1)[1] for p in extension) == "€" * 100


def test_twilio_takes_one_request_up_to_1600_characters() -> None:
    provider = TwilioProvider(TWILIO_SID, TWILIO_TOKEN, "+15005550006")
    assert provider.parts("x" * 1600) == ["x" * 1600]
    [long] = provider.parts("word " * 400)
    assert len(long) == TWILIO_MAX and long.endswith("…")
