"""The messaging dispatcher: claim due messages, send them, record what happened.

The same worker model as the webhook dispatcher:
- Claims are short transactions (`SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, under
  SQLite's write lock there) followed by a conditional `UPDATE … RETURNING` that leases the
  messages to one worker and counts the attempt.
  A lease that runs out (the worker died) makes the message due again: at least once.
- No transaction stays open across a network call: claim and commit, send, record.
- A failed attempt is retried after an exponential backoff with jitter; after
  `max_attempts` attempts, or at once on a permanent refusal (an invalid recipient), the
  message is `failed`.
- A booking's messages on one channel are sent in the order they were created (an earlier
  one being sent or due holds the later ones back), so an activation never overtakes its
  purchase confirmation.
- Only channels with a transport are claimed: with no SMTP server configured, e-mails wait
  `queued`, and go out as soon as a worker with SMTP runs, unless they have waited longer
  than `expiry` past their due time (then they are `failed`, not sent stale).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy import Table, and_, bindparam, case, exists, or_, select, update
from sqlalchemy.orm import aliased

from coverline.config import Settings
from coverline.db.engine import Database
from coverline.kit import ids
from coverline.kit.aio import keep_stepping
from coverline.kit.clock import Clock
from coverline.kit.text import storable, storable_or_none
from coverline.messaging.email import EmailError, Envelope, Mailer, SmtpConfig, compose
from coverline.messaging.models import Message
from coverline.messaging.service import FAILED, QUEUED, SENDING, SENT
from coverline.messaging.sms import (
    AfricasTalkingProvider,
    SmsError,
    SmsProvider,
    TwilioProvider,
)
from coverline.messaging.templates import EMAIL, SMS
from coverline.observability import metrics
from coverline.sandbox.service import Clocks

log = logging.getLogger("coverline.messaging")
M = Message


@dataclass(frozen=True)
class MessagingDispatchSettings:
    max_attempts: int = 5
    retry_base: float = 30.0
    retry_cap: float = 3600.0
    lease_seconds: float = 90.0
    poll_seconds: float = 0.2
    max_in_flight: int = 16
    batch_size: int = 100
    jitter: float = 0.1
    expiry: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Transports:
    """How each channel goes out; None: the channel is not configured in this process."""

    email: SmtpConfig | None = None
    sms: SmsProvider | None = None

    @property
    def channels(self) -> list[str]:
        return [name for name, on in ((EMAIL, self.email), (SMS, self.sms)) if on is not None]


def transports_from(settings: Settings) -> Transports:
    email = None
    if settings.smtp_host:
        host = urlsplit(settings.public_url).hostname or "localhost"
        email = SmtpConfig(
            host=settings.smtp_host,
            port=settings.resolved_smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            tls=settings.smtp_tls,
            timeout=settings.smtp_timeout_seconds,
            default_from=settings.email_from or f"no-reply@{host}",
        )
    sms: SmsProvider | None = None
    if settings.sms_provider == "twilio" and settings.twilio_account_sid:
        sms = TwilioProvider(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token or "",
            sender=settings.twilio_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            base_url=settings.twilio_base_url,
        )
    elif settings.sms_provider == "africastalking" and settings.africastalking_username:
        sms = AfricasTalkingProvider(
            username=settings.africastalking_username,
            api_key=settings.africastalking_api_key or "",
            sender=settings.africastalking_from,
            base_url=settings.africastalking_base_url,
        )
    return Transports(email, sms)


def dispatch_settings_from(settings: Settings) -> MessagingDispatchSettings:
    return MessagingDispatchSettings(
        max_attempts=settings.message_max_attempts,
        retry_base=settings.message_retry_base_seconds,
        lease_seconds=settings.message_lease_seconds,
        poll_seconds=settings.message_poll_seconds,
        max_in_flight=settings.message_max_in_flight,
        expiry=timedelta(hours=settings.message_expiry_hours),
    )


@dataclass(frozen=True)
class Claim:
    id: int
    public_id: str
    channel: str
    recipient: str
    recipient_name: str | None
    sender_name: str | None
    sender_email: str | None
    reply_to: str | None
    sms_sender: str | None
    subject: str | None
    text: str
    html: str | None
    attempts: int
    parts_sent: int
    provider_message_id: str | None


@dataclass
class Outcome:
    claim: Claim
    provider: str | None
    provider_ids: list[str]
    parts_sent: int
    error: str | None = None
    permanent: bool = False

    @property
    def succeeded(self) -> bool:
        return self.error is None


@dataclass
class _State:
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    outcomes: list[Outcome] = field(default_factory=list)


class MessageDispatcher:
    def __init__(
        self,
        database: Database,
        clock: Clock,
        transports: Transports,
        settings: MessagingDispatchSettings,
        clocks: Clocks | None = None,
        worker_id: str | None = None,
    ) -> None:
        self._database = database
        self._clock = clock
        self._transports = transports
        self._settings = settings
        self._clocks = clocks
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{ids.event_id()[4:12]}"
        self._state = _State()
        self._mailer = Mailer(transports.email) if transports.email else None
        self._http: aiohttp.ClientSession | None = None
        self._last_chores = 0.0
        self._last_expiry = 0.0

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> MessageDispatcher:
        if self._transports.sms is not None:
            self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.drain()
        if self._mailer is not None:
            await self._mailer.close()
        if self._http is not None:
            await self._http.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until `stop` is set, then finish the sends under way and record them."""
        if not self._transports.channels:
            log.info("no e-mail or SMS transport configured: messages stay queued")
        await keep_stepping(stop, self.step, self._settings.poll_seconds, log, "message dispatch")

    async def drain(self) -> None:
        while self._state.tasks:
            await asyncio.wait(set(self._state.tasks))
        await self._flush()

    # ------------------------------------------------------------------ one turn
    async def step(self) -> bool:
        state = self._state
        if state.tasks:
            await asyncio.wait(set(state.tasks), timeout=0.005, return_when=asyncio.FIRST_COMPLETED)
        await self._flush()
        await self._chores()
        capacity = self._settings.max_in_flight - len(state.tasks)
        claims = await self.claim(capacity) if capacity > 0 else []
        for claim in claims:
            task = asyncio.create_task(self._send(claim))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
        return bool(claims) or bool(state.tasks)

    # ------------------------------------------------------------------ claiming
    async def claim(self, capacity: int) -> list[Claim]:
        channels = self._transports.channels
        if not channels:
            return []
        now = self._clock.now()
        earlier = aliased(Message)
        # A booking's messages on one channel go out in the order they were created: one is
        # only claimed when no earlier one is being sent or due.
        blocked = exists().where(
            earlier.partner_id == M.partner_id,
            earlier.mode == M.mode,
            earlier.booking_id == M.booking_id,
            earlier.id < M.id,
            earlier.channel == M.channel,
            or_(
                earlier.status == SENDING,
                and_(earlier.status == QUEUED, earlier.next_attempt_at <= now),
            ),
        )
        due = (
            select(M.id)
            .where(
                M.status == QUEUED,
                M.next_attempt_at <= now,
                M.channel.in_(channels),
                ~blocked,
            )
            .order_by(M.next_attempt_at, M.id)
            .limit(min(capacity, self._settings.batch_size))
        )
        if not self._database.is_sqlite:
            due = due.with_for_update(skip_locked=True, of=M)
        async with self._database.transaction() as session:
            # Select, then update by id: PostgreSQL may run a LIMIT … SKIP LOCKED subquery
            # inside an UPDATE more than once and so claim more rows than the limit.
            ids = list(await session.scalars(due))
            if not ids:
                return []
            statement = (
                update(M)
                .where(M.id.in_(ids), M.status == QUEUED)
                .values(
                    status=SENDING,
                    attempts=M.attempts + 1,
                    lease_expires_at=now + timedelta(seconds=self._settings.lease_seconds),
                    leased_by=self.worker_id,
                    updated_at=now,
                )
                .returning(
                    M.id,
                    M.public_id,
                    M.channel,
                    M.recipient,
                    M.recipient_name,
                    M.sender_name,
                    M.sender_email,
                    M.reply_to,
                    M.sms_sender,
                    M.subject,
                    M.text,
                    M.html,
                    M.attempts,
                    M.parts_sent,
                    M.provider_message_id,
                )
                .execution_options(synchronize_session=False)
            )
            rows = (await session.execute(statement)).all()
        return [Claim(**row._asdict()) for row in sorted(rows, key=lambda row: row.id)]

    # ------------------------------------------------------------------ sending
    async def _send(self, claim: Claim) -> None:
        if claim.channel == EMAIL:
            outcome = await self._send_email(claim)
        else:
            outcome = await self._send_sms(claim)
        self._state.outcomes.append(outcome)

    async def _send_email(self, claim: Claim) -> Outcome:
        mailer = self._mailer
        assert mailer is not None
        message = compose(
            Envelope(
                public_id=claim.public_id,
                recipient=claim.recipient,
                recipient_name=claim.recipient_name,
                sender_name=claim.sender_name,
                sender_email=claim.sender_email,
                reply_to=claim.reply_to,
                subject=claim.subject or "",
                text=claim.text,
                html=claim.html,
            ),
            mailer.config,
        )
        message_id = str(message["Message-ID"])
        try:
            await mailer.send(message)
        except EmailError as exc:
            return Outcome(claim, "smtp", [], 0, str(exc), exc.permanent)
        except Exception as exc:  # a malformed address or header: never retried
            return Outcome(claim, "smtp", [], 0, f"{type(exc).__name__}: {exc}", True)
        return Outcome(claim, "smtp", [message_id], 1)

    async def _send_sms(self, claim: Claim) -> Outcome:
        provider = self._transports.sms
        assert provider is not None and self._http is not None
        ids_so_far = [i for i in (claim.provider_message_id or "").split(",") if i]
        parts = provider.parts(claim.text)
        sent = min(claim.parts_sent, len(parts))
        for part in parts[sent:]:
            try:
                provider_id = await provider.send_part(
                    self._http, claim.recipient, part, claim.sms_sender
                )
            except SmsError as exc:
                return Outcome(claim, provider.name, ids_so_far, sent, str(exc), exc.permanent)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                return Outcome(claim, provider.name, ids_so_far, sent, error)
            ids_so_far.append(provider_id)
            sent += 1
        return Outcome(claim, provider.name, ids_so_far, sent)

    # ------------------------------------------------------------------ recording
    def _delay(self, attempts: int) -> float:
        growth = 2.0 ** max(attempts - 1, 0)
        base = min(self._settings.retry_base * growth, self._settings.retry_cap)
        return base * (1 + random.uniform(-self._settings.jitter, self._settings.jitter))

    async def _flush(self) -> None:
        outcomes, self._state.outcomes = self._state.outcomes, []
        if not outcomes:
            return
        now = self._clock.now()
        sent, retries, failures = [], [], []
        counted: Counter[tuple[str, str]] = Counter()
        for outcome in outcomes:
            claim = outcome.claim
            base = {
                "b_id": claim.id,
                "b_provider": outcome.provider,
                # The provider's and SMTP server's text, storable whatever they sent: a NUL
                # would fail this transaction on PostgreSQL, and the message be sent again.
                "b_provider_id": storable(",".join(outcome.provider_ids))[:500] or None,
                "b_parts": outcome.parts_sent,
                "b_error": storable_or_none(outcome.error),
            }
            if outcome.succeeded:
                sent.append(base)
                counted[claim.channel, "sent"] += 1
            elif outcome.permanent or claim.attempts >= self._settings.max_attempts:
                failures.append(base)
                counted[claim.channel, "failed"] += 1
            else:
                delay = self._delay(claim.attempts)
                retries.append({**base, "b_next": now + timedelta(seconds=delay)})
                counted[claim.channel, "retry"] += 1
                # Not the provider's error: it may quote the recipient. It is on the message.
                log.info(
                    "message %s attempt %d failed, retry in %.1fs",
                    claim.public_id,
                    claim.attempts,
                    delay,
                )
        table = cast(Table, Message.__table__)
        mine = and_(
            table.c.id == bindparam("b_id"),
            table.c.leased_by == self.worker_id,
            table.c.status == SENDING,
        )
        common: dict[str, Any] = {
            "provider": bindparam("b_provider"),
            "provider_message_id": bindparam("b_provider_id"),
            "parts_sent": bindparam("b_parts"),
            "error": bindparam("b_error"),
            "lease_expires_at": None,
            "leased_by": None,
            "updated_at": now,
        }
        async with self._database.transaction() as session:
            connection = await session.connection()
            if sent:
                await connection.execute(
                    update(table).where(mine).values(**common, status=SENT, sent_at=now), sent
                )
            if failures:
                await connection.execute(
                    update(table).where(mine).values(**common, status=FAILED), failures
                )
            if retries:
                await connection.execute(
                    update(table)
                    .where(mine)
                    .values(**common, status=QUEUED, next_attempt_at=bindparam("b_next")),
                    retries,
                )
        for (channel, outcome_name), count in counted.items():
            metrics.message_outcome(channel, outcome_name, count)

    # ------------------------------------------------------------------ chores
    async def _chores(self) -> None:
        """Once a second: reap expired leases, bring forward sandbox activations whose test
        clock has passed their start; once a minute: expire stale queued messages."""
        if time.monotonic() - self._last_chores < 1.0:
            return
        self._last_chores = time.monotonic()
        now = self._clock.now()
        spent = M.attempts >= self._settings.max_attempts
        async with self._database.transaction() as session:
            await session.execute(
                update(M)
                .where(M.status == SENDING, M.lease_expires_at < now)
                .values(
                    status=case((spent, FAILED), else_=QUEUED),
                    leased_by=None,
                    lease_expires_at=None,
                    error="The worker sending it stopped before recording the result.",
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
        if self._clocks is not None:
            await self._bring_forward(now)
        if time.monotonic() - self._last_expiry >= 60.0:
            self._last_expiry = time.monotonic()
            await self.expire(now)

    async def _bring_forward(self, now: datetime) -> None:
        assert self._clocks is not None
        offsets = await self._clocks.offsets()
        if not offsets:
            return
        async with self._database.transaction() as session:
            for partner_id, offset in offsets.items():
                await session.execute(
                    update(M)
                    .where(
                        M.partner_id == partner_id,
                        M.mode == "sandbox",
                        M.status == QUEUED,
                        M.attempts == 0,
                        M.next_attempt_at > now,
                        M.scheduled_at <= now + offset,
                    )
                    .values(next_attempt_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )

    async def expire(self, now: datetime) -> None:
        hours = self._settings.expiry.total_seconds() / 3600
        async with self._database.transaction() as session:
            expired = await session.scalars(
                update(M)
                .where(M.status == QUEUED, M.next_attempt_at < now - self._settings.expiry)
                .values(
                    status=FAILED,
                    error=f"Not sent within {hours:g} hours of being due "
                    "(is the channel configured?).",
                    updated_at=now,
                )
                .returning(M.channel)
                .execution_options(synchronize_session=False)
            )
            channels = Counter(expired)
        for channel, count in channels.items():
            metrics.message_outcome(channel, "expired", count)
