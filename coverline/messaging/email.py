"""E-mail over SMTP with aiosmtplib: multipart/alternative (text, then HTML), UTF-8
throughout, `Reply-To` the partner's support address, and a `Message-ID` derived from the
message's id, so that a copy sent twice (docs/messaging.md, the at-least-once window) carries
the same `Message-ID` both times."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib


class EmailError(Exception):
    """The server refused or the connection failed; `permanent` refusals are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(message)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: str  # none | starttls | tls
    timeout: float
    default_from: str

    @property
    def domain(self) -> str:
        return self.default_from.rpartition("@")[2] or "localhost"


@dataclass(frozen=True)
class Envelope:
    public_id: str
    recipient: str
    recipient_name: str | None
    sender_name: str | None
    sender_email: str | None
    reply_to: str | None
    subject: str
    text: str
    html: str | None


def _address(email: str, name: str | None) -> Address:
    return Address(display_name=name or "", addr_spec=email)


def compose(envelope: Envelope, config: SmtpConfig, now: datetime | None = None) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = envelope.subject
    message["From"] = _address(envelope.sender_email or config.default_from, envelope.sender_name)
    message["To"] = _address(envelope.recipient, envelope.recipient_name)
    if envelope.reply_to:
        message["Reply-To"] = envelope.reply_to
    message["Date"] = format_datetime(now or datetime.now(UTC))
    message["Message-ID"] = f"<{envelope.public_id}@{config.domain}>"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(envelope.text, charset="utf-8")
    if envelope.html:
        message.add_alternative(envelope.html, subtype="html", charset="utf-8")
    return message


def _permanent(exc: aiosmtplib.SMTPException) -> bool:
    """A 5xx refusal of the sender, the recipients or the content: sending again is futile.
    Authentication and connection failures are the operator's to fix, so they are retried."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= refused.code < 600 for refused in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPDataError):
        return 500 <= exc.code < 600
    return False


class Mailer:
    """Sends one message per connection. The send counts as done once the server has
    answered DATA with 250; QUIT is left to a background task, so a slow goodbye never
    delays recording that the message was sent."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._closing: set[asyncio.Task[None]] = set()

    def client(self) -> aiosmtplib.SMTP:
        config = self.config
        return aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.tls == "tls",
            start_tls=config.tls == "starttls",
            timeout=config.timeout,
        )

    async def send(self, message: EmailMessage) -> str:
        """The server's answer to DATA. Raises EmailError."""
        client = self.client()
        try:
            await client.connect()
            _refused, reply = await client.send_message(message)
        except aiosmtplib.SMTPException as exc:
            client.close()
            raise EmailError(f"{type(exc).__name__}: {exc}", permanent=_permanent(exc)) from None
        except (OSError, TimeoutError) as exc:
            client.close()
            raise EmailError(f"{type(exc).__name__}: {exc}") from None
        task = asyncio.create_task(self._quit(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return reply

    async def _quit(self, client: aiosmtplib.SMTP) -> None:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
            await asyncio.wait_for(client.quit(), 5.0)
        client.close()

    async def close(self) -> None:
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
