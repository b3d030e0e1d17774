"""Messaging fixtures: a real SMTP server (aiosmtpd on 127.0.0.1), local HTTP servers that
speak Twilio's and Africa's Talking's SMS APIs, and a messaging dispatcher running in this
process against them."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from coverline.messaging.dispatcher import (
    MessageDispatcher,
    MessagingDispatchSettings,
    Transports,
)
from coverline.messaging.email import SmtpConfig
from coverline.messaging.models import Message
from coverline.messaging.sms import AfricasTalkingProvider, TwilioProvider
from coverline.runtime import Services
from tests.conftest import PartnerClient
from tests.fixtures.gadget import gadget_item
from tests.fixtures.payloads import policyholder
from tests.fixtures.server import free_port

NAME_FIRST = "Ọláolúwa"
NAME_LAST = "Adéwálé"
FULL_NAME = f"{NAME_FIRST} {NAME_LAST}"
EMAIL_FROM = "cover@coverline.test"
_addresses = itertools.count(1)


def customer_email() -> str:
    """A recipient of its own for each booking, so tests never read each other's mail."""
    return f"olaoluwa.{next(_addresses)}.{time.monotonic_ns()}@example.ng"


# ---------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes

    @property
    def subject(self) -> str:
        # Python folds a subject that fits a line of its own onto a continuation line
        # ("Subject:\r\n Your …"); its parser keeps that folding space, mail readers drop it.
        return str(self.message["Subject"]).strip()

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None, f"no text/{subtype} part"
        assert body.get_content_type() == f"text/{subtype}"
        # On the wire lines end in CRLF; compare with the text as rendered.
        return str(body.get_content()).replace("\r\n", "\n")


class MailHandler:
    """Accepts every message (after `delay`), or answers what `script` says first."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.script: deque[str] = deque()
        self.delay = 0.0
        self.refused: list[bytes] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        raw = bytes(envelope.original_content or envelope.content)
        with self._lock:
            answer = self.script.popleft() if self.script else "250 Message accepted"
            if not answer.startswith("250"):
                self.refused.append(raw)
                return answer
            parsed = BytesParser(policy=default_policy).parsebytes(raw)
            assert isinstance(parsed, EmailMessage)
            self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), parsed, raw))
        return answer

    def to(self, address: str) -> list[Mail]:
        with self._lock:
            return [mail for mail in self.mails if address in mail.rcpt_tos]

    async def wait_for(self, address: str, count: int, timeout: float = 15.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while len(self.to(address)) < count:
            if time.monotonic() > deadline:
                subjects = [mail.subject for mail in self.to(address)]
                raise AssertionError(f"expected {count} e-mails to {address}, got {subjects}")
            await asyncio.sleep(0.02)
        return self.to(address)


@dataclass
class SmtpServer:
    handler: MailHandler
    port: int

    def config(self) -> SmtpConfig:
        return SmtpConfig(
            host="127.0.0.1",
            port=self.port,
            username=None,
            password=None,
            tls="none",
            timeout=10.0,
            default_from=EMAIL_FROM,
        )


@pytest.fixture
def smtp() -> Any:
    handler = MailHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield SmtpServer(handler, controller.port)
    finally:
        controller.stop()


# ---------------------------------------------------------------------------- SMS providers


@dataclass
class SmsRequest:
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class SmsServer:
    """A local server speaking one provider's wire format; `script` holds the answers for
    the next requests (status, JSON body), then it accepts."""

    kind: str
    requests: list[SmsRequest] = field(default_factory=list)
    script: deque[tuple[int, Any]] = field(default_factory=deque)
    url: str = ""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def accepted(self, to: str) -> list[SmsRequest]:
        return [r for r in self.requests if r.form.get("To", r.form.get("to")) == to]

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[SmsRequest]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} SMS requests, got {len(self.requests)}")
            await asyncio.sleep(0.02)
        return list(self.requests)

    def success(self, form: dict[str, str]) -> tuple[int, Any]:
        number = next(self._ids)
        if self.kind == "twilio":
            return 201, {
                "sid": f"SM{number:032x}",
                "status": "queued",
                "to": form.get("To"),
                "body": form.get("Body"),
            }
        return 201, {
            "SMSMessageData": {
                "Message": "Sent to 1/1 Total Cost: NGN 2.2000",
                "Recipients": [
                    {
                        "statusCode": 101,
                        "number": form.get("to"),
                        "status": "Success",
                        "cost": "NGN 2.2000",
                        "messageId": f"ATXid_{number:08d}",
                    }
                ],
            }
        }

    async def handle(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append(SmsRequest(request.path, dict(request.headers), form))
        status, body = self.script.popleft() if self.script else self.success(form)
        if isinstance(body, bytes):  # not JSON, nor even UTF-8
            return web.Response(body=body, status=status, content_type="text/plain")
        return web.json_response(body, status=status)


@asynccontextmanager
async def sms_server(kind: str) -> AsyncIterator[SmsServer]:
    server = SmsServer(kind)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


TWILIO_SID = "AC" + "5" * 32
TWILIO_TOKEN = "twilio-auth-token-0123456789"
AT_USERNAME = "coverline_ng"
AT_API_KEY = "atsk_0123456789abcdef0123456789abcdef"


@pytest.fixture
async def twilio() -> AsyncIterator[SmsServer]:
    async with sms_server("twilio") as server:
        yield server


@pytest.fixture
async def africastalking() -> AsyncIterator[SmsServer]:
    async with sms_server("africastalking") as server:
        yield server


def twilio_provider(server: SmsServer) -> TwilioProvider:
    return TwilioProvider(TWILIO_SID, TWILIO_TOKEN, "+15005550006", base_url=server.url)


def africastalking_provider(server: SmsServer) -> AfricasTalkingProvider:
    return AfricasTalkingProvider(AT_USERNAME, AT_API_KEY, "COVERLINE", base_url=server.url)


# ---------------------------------------------------------------------------- the dispatcher

FAST = MessagingDispatchSettings(
    max_attempts=3, retry_base=0.05, lease_seconds=30, poll_seconds=0.01
)


@asynccontextmanager
async def running_dispatcher(
    services: Services, transports: Transports, settings: MessagingDispatchSettings = FAST
) -> AsyncIterator[MessageDispatcher]:
    # The session's database holds the queued messages of other tests' live bookings: they
    # are not this test's to send.
    async with services.database.transaction() as session:
        await session.execute(
            update(Message)
            .where(Message.status == "queued")
            .values(status="failed", error="Left by an earlier test.")
        )
    dispatcher = MessageDispatcher(
        services.database, services.clock, transports, settings, services.clocks
    )
    async with dispatcher:
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            yield dispatcher
        finally:
            stop.set()
            await task


@pytest.fixture
async def mail_dispatcher(services: Services, smtp: SmtpServer) -> AsyncIterator[MessageDispatcher]:
    async with running_dispatcher(services, Transports(email=smtp.config())) as dispatcher:
        yield dispatcher


# ---------------------------------------------------------------------------- helpers


def nigerian_holder(email: str, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "first_name": NAME_FIRST,
        "last_name": NAME_LAST,
        "email": email,
        "country": "NG",
        "phone": "+2348031234567",
    }
    return policyholder(**{**fields, **overrides})


def gadget_request(email: str, start: datetime | None = None, **holder: Any) -> dict[str, Any]:
    return {
        "request": [gadget_item(start or datetime.now(UTC) + timedelta(seconds=1))],
        "currency": "NGN",
        "customer_country": "NG",
        "policyholder": nigerian_holder(email, **holder),
    }


async def sell(client: PartnerClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.call("POST", "instant_booking/", body)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def configure(client: PartnerClient, **settings: Any) -> dict[str, Any]:
    response = await client.call("PUT", "messaging/settings", settings)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def messages_of(services: Services, booking_id: str) -> list[Message]:
    async with services.database.reading() as session:
        rows = await session.scalars(
            select(Message).where(Message.booking_id == booking_id).order_by(Message.id)
        )
        return list(rows)


async def wait_until(
    services: Services,
    booking_id: str,
    done: Callable[[list[Message]], bool],
    timeout: float = 15.0,
) -> list[Message]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await messages_of(services, booking_id)
        if done(rows):
            return rows
        if time.monotonic() > deadline:
            described = [(m.kind, m.channel, m.status, m.attempts, m.error) for m in rows]
            raise AssertionError(f"messages of {booking_id} never settled: {described}")
        await asyncio.sleep(0.02)


def all_settled(rows: list[Message]) -> bool:
    return bool(rows) and all(m.status not in {"queued", "sending"} for m in rows)
