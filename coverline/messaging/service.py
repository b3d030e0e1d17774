"""Customer messaging: partners' settings and templates, the fan-out of outbox events into
messages, resends, and the message log.

`fan_out` runs inside the transaction that records an event (like the webhook fan-out), so a
change is never committed without its messages and a rolled-back change never sends one. It
renders each message then and stores the rendered content on the row; the dispatcher only
sends what is stored.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from coverline.dashboard.models import DashboardUser
from coverline.db.prepared import Prepared
from coverline.events.models import Event
from coverline.kit.clock import Clock
from coverline.kit.dates import server_time
from coverline.kit.errors import NotFound, ValidationFailed
from coverline.kit.validation import is_language
from coverline.messaging import templates
from coverline.messaging.context import (
    Branding,
    booking_context,
    parse_time,
    sample_context,
    with_renewal,
)
from coverline.messaging.models import Message, MessageTemplate, MessagingSettings
from coverline.messaging.schemas import (
    DEFAULT_CHANNELS,
    DEFAULT_COLOUR,
    SettingsIn,
    SettingsPatch,
    TemplateIn,
)
from coverline.messaging.sms import e164
from coverline.messaging.templates import EMAIL, KINDS, Rendered, Source
from coverline.partners.models import Partner
from coverline.quotes.models import QuotePackage

log = logging.getLogger("coverline.messaging")
_real_time = Clock()

# Outbox event → the message kinds it causes.
BOOKING_EVENTS = ("BOOKING_CREATED", "BOOKING_PAYMENT_CONFIRMED", "BOOKING_UPDATED")
RENEWAL_KINDS = {
    "RENEWAL_NOTIFICATION": "renewal_notification",
    "RENEWAL_DUE": "renewal_due",
    "RENEWAL_EXPIRED": "renewal_expired",
    "RENEWAL_CREATED": "renewal_success",
}
OPERATOR_EVENTS = {"ENDPOINT_DISABLED"}
HANDLED = {*BOOKING_EVENTS, "BOOKING_CANCELLED", *RENEWAL_KINDS, *OPERATOR_EVENTS}
# Events whose payload is the booking, or carries it: where renewal messages find it.
BOOKING_PAYLOADS = (*BOOKING_EVENTS, "BOOKING_CANCELLED", "RENEWAL_CREATED")

# send_email: the XCover event names, and the message kind each resends.
EMAIL_EVENTS = {
    "BOOKING_CREATED": "purchase",
    "BOOKING_UPDATED": "modification",
    "BOOKING_CANCELLED": "cancellation",
    "RENEWAL_NOTIFICATION": "renewal_notification",
    "RENEWAL_DUE": "renewal_due",
    "RENEWAL_EXPIRED": "renewal_expired",
    "RENEWAL_CREATED": "renewal_success",
}
KIND_EVENT_NAMES = {kind: name for name, kind in EMAIL_EVENTS.items()} | {
    "activation": "BOOKING_CREATED"
}
# What a resend of each kind is rendered from (the latest such event of the booking).
KIND_SOURCES = {
    "purchase": ("BOOKING_CREATED", "BOOKING_PAYMENT_CONFIRMED"),
    "activation": ("BOOKING_CREATED", "BOOKING_PAYMENT_CONFIRMED"),
    "modification": ("BOOKING_UPDATED",),
    "cancellation": ("BOOKING_CANCELLED",),
    **{kind: (name,) for name, kind in RENEWAL_KINDS.items()},
}
KIND_STATUSES = {
    "purchase": "CONFIRMED",
    "activation": "CONFIRMED",
    "modification": "CONFIRMED",
    "cancellation": "CANCELLED",
}

STORED = "stored"
QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
CANCELLED = "cancelled"
STATUSES = (STORED, QUEUED, SENDING, SENT, FAILED, CANCELLED)


def message_public_id() -> str:
    return "cmsg_" + secrets.token_hex(12)


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class PartnerRef:
    """What messages say of the partner."""

    id: int
    name: str
    support_email: str | None


@dataclass(frozen=True)
class Config:
    """A partner's effective messaging settings in one mode (the defaults without a row)."""

    partner: PartnerRef
    mode: str
    enabled: bool
    channels: list[str]
    events: list[str]
    sender_name: str | None
    sender_email: str | None
    reply_to: str | None
    support_url: str | None
    brand_colour: str
    sms_sender: str | None
    send_in_sandbox: bool
    customised: bool

    @property
    def branding(self) -> Branding:
        return Branding(
            name=self.sender_name or self.partner.name,
            support_url=self.support_url,
            support_email=self.reply_to or self.partner.support_email,
            brand_colour=self.brand_colour,
        )

    @property
    def stores_only(self) -> bool:
        """A sandbox renders and stores its messages, and sends them only when told to."""
        return self.mode == "sandbox" and not self.send_in_sandbox


PARTNERS = cast(Table, Partner.__table__)
SETTINGS = cast(Table, MessagingSettings.__table__)
TEMPLATES = cast(Table, MessageTemplate.__table__)
SETTING_COLUMNS = (
    "enabled",
    "channels",
    "events",
    "sender_name",
    "sender_email",
    "reply_to",
    "support_url",
    "brand_colour",
    "sms_sender",
    "send_in_sandbox",
)
# Read by every change that causes messages (a booking, a renewal batch): statements compiled
# once, run on the driver's connection where it can.
LOAD_CONFIG = Prepared(
    select(
        PARTNERS.c.name,
        PARTNERS.c.support_email,
        SETTINGS.c.mode,
        *(SETTINGS.c[name] for name in SETTING_COLUMNS),
    )
    .select_from(
        PARTNERS.outerjoin(
            SETTINGS,
            and_(SETTINGS.c.partner_id == PARTNERS.c.id, SETTINGS.c.mode == bindparam("mode")),
        )
    )
    .where(PARTNERS.c.id == bindparam("partner_id"))
)
LOAD_TEMPLATES = Prepared(
    select(
        TEMPLATES.c.kind,
        TEMPLATES.c.channel,
        TEMPLATES.c.language,
        TEMPLATES.c.subject,
        TEMPLATES.c.text,
        TEMPLATES.c.html,
        TEMPLATES.c.updated_at,
    )
    .where(TEMPLATES.c.partner_id == bindparam("partner_id"), TEMPLATES.c.mode == bindparam("mode"))
    .order_by(TEMPLATES.c.id)
)
# What a transaction has read of the settings and templates (see `_forget`).
CONFIG_CACHE = "messaging_config"
TEMPLATES_CACHE = "messaging_templates"


async def _config_in_transaction(session: AsyncSession, partner_id: int, mode: str) -> Config:
    """A transaction that records many events (a scheduler batch) reads the settings once."""
    cache: dict[tuple[int, str], Config] = session.info.setdefault(CONFIG_CACHE, {})
    config = cache.get((partner_id, mode))
    if config is None:
        config = cache[(partner_id, mode)] = await load_config(session, partner_id, mode)
    return config


def _forget(session: AsyncSession) -> None:
    """A transaction that changes settings or templates reads them again afterwards."""
    session.info.pop(CONFIG_CACHE, None)
    session.info.pop(TEMPLATES_CACHE, None)


async def load_config(session: AsyncSession, partner_id: int, mode: str) -> Config:
    connection = await session.connection()
    found = await LOAD_CONFIG.execute(connection, {"partner_id": partner_id, "mode": mode})
    if not found:
        raise NotFound("Not found.")
    name, support_email, settings_mode, *values = found[0]
    partner = PartnerRef(partner_id, name, support_email)
    if settings_mode is None:
        return Config(
            partner,
            mode,
            True,
            list(DEFAULT_CHANNELS),
            list(KINDS),
            None,
            None,
            None,
            None,
            DEFAULT_COLOUR,
            None,
            False,
            False,
        )
    row = dict(zip(SETTING_COLUMNS, values, strict=True))
    return Config(
        partner,
        mode,
        bool(row["enabled"]),
        list(row["channels"]),
        list(row["events"]),
        row["sender_name"],
        row["sender_email"],
        row["reply_to"],
        row["support_url"],
        row["brand_colour"],
        row["sms_sender"],
        bool(row["send_in_sandbox"]),
        True,
    )


def settings_json(config: Config) -> dict[str, Any]:
    return {
        "mode": config.mode,
        "enabled": config.enabled,
        "channels": config.channels,
        "events": config.events,
        "sender_name": config.sender_name,
        "sender_email": config.sender_email,
        "reply_to": config.reply_to,
        "support_url": config.support_url,
        "brand_colour": config.brand_colour,
        "sms_sender": config.sms_sender,
        "send_in_sandbox": config.send_in_sandbox,
        "effective": {
            "sender_name": config.branding.name,
            "reply_to": config.branding.support_email,
            "sending": config.enabled and not config.stores_only,
        },
    }


async def save_settings(
    session: AsyncSession, partner_id: int, mode: str, data: SettingsIn, now: datetime
) -> Config:
    values = {**data.model_dump(), "updated_at": now}
    await session.execute(
        _upsert(
            session,
            MessagingSettings,
            {"partner_id": partner_id, "mode": mode, "created_at": now, **values},
            keys=["partner_id", "mode"],
            changes=values,
        )
    )
    _forget(session)
    return await load_config(session, partner_id, mode)


NOT_NULL_SETTINGS = ("enabled", "channels", "events", "brand_colour", "send_in_sandbox")


async def patch_settings(
    session: AsyncSession, partner_id: int, mode: str, data: SettingsPatch, now: datetime
) -> Config:
    changes = data.model_dump(exclude_unset=True)
    nulls = [name for name in NOT_NULL_SETTINGS if name in changes and changes[name] is None]
    if nulls:
        raise ValidationFailed(errors={name: ["This field may not be null."] for name in nulls})
    current = settings_json(await load_config(session, partner_id, mode))
    current.pop("mode")
    current.pop("effective")
    return await save_settings(
        session, partner_id, mode, SettingsIn.model_validate({**current, **changes}), now
    )


# ---------------------------------------------------------------------------- templates


def _check_address(kind: str, channel: str, language: str) -> str:
    errors: dict[str, list[str]] = {}
    if kind not in KINDS:
        errors["event"] = [f"Unknown event '{kind}'; one of {', '.join(KINDS)}."]
    if channel not in templates.CHANNELS:
        errors["channel"] = [f"Unknown channel '{channel}'; email or sms."]
    normalised = templates.normalise_language(language)
    if not is_language(normalised):
        errors["language"] = [f"'{language}' is not an ISO 639-1 language (e.g. en, fr-ca)."]
    if errors:
        raise ValidationFailed(errors=errors)
    return normalised


def template_json(
    kind: str, channel: str, language: str, source: Source, saved_at: datetime | None
) -> dict[str, Any]:
    """A template; `saved_at` is when the partner saved its own (None: the built-in one)."""
    return {
        "event": kind,
        "channel": channel,
        "language": language,
        "source": "partner" if saved_at is not None else "built_in",
        "subject": source.subject,
        "text": source.text,
        "html": source.html,
        "updated_at": server_time(saved_at) if saved_at is not None else None,
    }


class TemplateRow(NamedTuple):
    """A partner's own template, as read."""

    kind: str
    channel: str
    language: str
    subject: str | None
    text: str
    html: str | None
    updated_at: datetime


async def _overrides(session: AsyncSession, partner_id: int, mode: str) -> list[TemplateRow]:
    """The partner's own templates in a mode (a few at most), read once per transaction."""
    cache: dict[tuple[int, str], list[TemplateRow]] = session.info.setdefault(TEMPLATES_CACHE, {})
    rows = cache.get((partner_id, mode))
    if rows is None:
        connection = await session.connection()
        found = await LOAD_TEMPLATES.execute(connection, {"partner_id": partner_id, "mode": mode})
        rows = cache[(partner_id, mode)] = [TemplateRow(*row) for row in found]
    return rows


def _source_of(row: TemplateRow) -> Source:
    return Source(row.subject, row.text, row.html)


async def list_templates(session: AsyncSession, partner_id: int, mode: str) -> list[dict[str, Any]]:
    rows = {(r.kind, r.channel, r.language): r for r in await _overrides(session, partner_id, mode)}
    listed = []
    for kind in KINDS:
        for channel in templates.CHANNELS:
            built_in = rows.get((kind, channel, templates.BUILT_IN_LANGUAGE))
            source = _source_of(built_in) if built_in else templates.built_in_source(kind, channel)
            saved_at = built_in.updated_at if built_in else None
            listed.append(
                template_json(kind, channel, templates.BUILT_IN_LANGUAGE, source, saved_at)
            )
            for (k, c, language), row in sorted(rows.items()):
                if k == kind and c == channel and language != templates.BUILT_IN_LANGUAGE:
                    listed.append(
                        template_json(kind, channel, language, _source_of(row), row.updated_at)
                    )
    return listed


def _validated(config: Config, kind: str, channel: str, language: str, data: TemplateIn) -> Source:
    source = Source(data.subject, data.text, data.html)
    problems = templates.check_source(
        source, channel, sample_context(kind, config.branding, language)
    )
    if problems:
        raise ValidationFailed(errors=problems)
    return source


async def save_template(
    session: AsyncSession,
    partner_id: int,
    mode: str,
    address: tuple[str, str, str],
    data: TemplateIn,
    now: datetime,
) -> dict[str, Any]:
    kind, channel, raw_language = address
    language = _check_address(kind, channel, raw_language)
    config = await load_config(session, partner_id, mode)
    source = _validated(config, kind, channel, language, data)
    key = {
        "partner_id": partner_id,
        "mode": mode,
        "kind": kind,
        "channel": channel,
        "language": language,
    }
    changes = {"subject": source.subject, "text": source.text, "html": source.html}
    _forget(session)
    await session.execute(
        _upsert(
            session,
            MessageTemplate,
            {**key, **changes, "created_at": now, "updated_at": now},
            keys=list(key),
            changes={**changes, "updated_at": now},
        )
    )
    return template_json(kind, channel, language, source, now)


async def delete_template(
    session: AsyncSession, partner_id: int, mode: str, address: tuple[str, str, str]
) -> None:
    kind, channel, raw_language = address
    language = _check_address(kind, channel, raw_language)
    _forget(session)
    result = await session.execute(
        delete(MessageTemplate).where(
            MessageTemplate.partner_id == partner_id,
            MessageTemplate.mode == mode,
            MessageTemplate.kind == kind,
            MessageTemplate.channel == channel,
            MessageTemplate.language == language,
        )
    )
    if not getattr(result, "rowcount", 0):
        raise NotFound(f"No {language} {channel} template of your own for {kind}.")


def _pick(rows: Sequence[TemplateRow], kind: str, channel: str, language: str) -> Source | None:
    found = {(r.kind, r.channel, r.language): r for r in rows}
    for candidate in templates.language_candidates(language):
        row = found.get((kind, channel, candidate))
        if row is not None:
            return _source_of(row)
    return None


async def preview(
    session: AsyncSession,
    partner_id: int,
    mode: str,
    address: tuple[str, str, str],
    draft: dict[str, Any] | None,
    booking_id: str | None,
) -> dict[str, Any]:
    kind, channel, raw_language = address
    language = _check_address(kind, channel, raw_language)
    config = await load_config(session, partner_id, mode)
    if booking_id is None:
        context = sample_context(kind, config.branding, language)
    else:
        package = await _booking(session, partner_id, mode, booking_id)
        source_event = await _latest_event(session, package, KIND_SOURCES[kind])
        source_event = source_event or await _latest_event(session, package, BOOKING_PAYLOADS)
        if source_event is None:
            raise ValidationFailed(errors={"booking": [f"Booking {booking_id} has no data yet."]})
        booking, renewal, amount = await _subject(session, source_event)
        if booking is None:
            raise ValidationFailed(errors={"booking": [f"Booking {booking_id} has no data yet."]})
        if renewal is None and kind in RENEWAL_KINDS.values():
            raise ValidationFailed(
                errors={"booking": [f"Booking {booking_id} has had no {KIND_EVENT_NAMES[kind]}."]}
            )
        context = _context(kind, booking, renewal, amount, config, language)
    if draft is not None:
        if draft.get("text") is None:
            raise ValidationFailed(errors={"text": ["This field is required."]})
        source = _validated(config, kind, channel, language, TemplateIn.model_validate(draft))
        try:
            rendered = templates.render_source(source, channel, context)
        except templates.TemplateProblem as exc:
            raise ValidationFailed(errors={exc.field: [exc.message]}) from None
    else:
        override = _pick(await _overrides(session, partner_id, mode), kind, channel, language)
        rendered = templates.render(kind, channel, override, context)
    return {
        "event": kind,
        "channel": channel,
        "language": language,
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
    }


# ---------------------------------------------------------------------------- fan-out


def _kinds(event: Event) -> list[str]:
    payload = event.payload
    if event.type == "BOOKING_CREATED":
        return ["purchase", "activation"] if payload.get("status") == "CONFIRMED" else []
    if event.type == "BOOKING_PAYMENT_CONFIRMED":
        return ["purchase", "activation"]
    if event.type == "BOOKING_UPDATED":
        return ["modification"]
    if event.type == "BOOKING_CANCELLED":
        return ["cancellation"]
    kind = RENEWAL_KINDS.get(event.type)
    return [kind] if kind else []


def _period(kind: str, event: Event, renewal: dict[str, Any] | None) -> str:
    if renewal is not None and kind.startswith("renewal_"):
        return str(renewal.get("id"))
    if kind in {"purchase", "activation"}:
        return "1"
    return event.public_id


async def _latest_event(
    session: AsyncSession, package: QuotePackage, types: Sequence[str]
) -> Event | None:
    event: Event | None = await session.scalar(
        select(Event)
        .where(
            Event.resource_id == package.id,
            Event.partner_id == package.partner_id,
            Event.mode == package.mode,
            Event.type.in_(types),
        )
        .order_by(Event.id.desc())
        .limit(1)
    )
    return event


async def _booking(
    session: AsyncSession, partner_id: int, mode: str, booking_id: str
) -> QuotePackage:
    package = await session.scalar(
        select(QuotePackage).where(
            QuotePackage.id == booking_id,
            QuotePackage.partner_id == partner_id,
            QuotePackage.mode == mode,
            QuotePackage.is_booking.is_(True),
        )
    )
    if package is None:
        raise NotFound(f"Booking {booking_id} not found.")
    return package


async def _subject(
    session: AsyncSession, event: Event
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, Any]:
    """The booking a message is about (as its events last rendered it), the renewal, and the
    amount paid for a renewal."""
    payload = event.payload
    if event.type == "RENEWAL_CREATED":
        return payload.get("booking"), payload.get("renewal"), payload.get("amount")
    if event.type not in RENEWAL_KINDS:
        return payload, None, None
    renewal = payload.get("renewal")
    if not isinstance(renewal, dict):
        return None, None, None
    latest = await _latest_booking(session, event)
    if not isinstance(latest, dict):
        return None, renewal, None
    booking = latest.get("booking") if "renewal" in latest else latest
    return booking, renewal, None


async def _latest_booking(session: AsyncSession, event: Event) -> Any:
    """The payload of the resource's latest booking event. The outbox writes a transaction's
    events before their messages, so this sees the booking events of the same transaction
    too, and a transaction that records many renewal events (a scheduler batch) looks each
    booking up once."""
    cache: dict[tuple[int, str, str], Any] = session.info.setdefault("messaging_bookings", {})
    key = (event.partner_id, event.mode, event.resource_id)
    if key not in cache:
        cache[key] = await session.scalar(
            select(Event.payload)
            .where(
                Event.resource_id == event.resource_id,
                Event.partner_id == event.partner_id,
                Event.mode == event.mode,
                Event.type.in_(BOOKING_PAYLOADS),
            )
            .order_by(Event.id.desc())
            .limit(1)
        )
    return cache[key]


def _context(
    kind: str,
    booking: dict[str, Any],
    renewal: dict[str, Any] | None,
    amount: Any,
    config: Config,
    language: str,
) -> dict[str, Any]:
    context = booking_context(kind, booking, config.branding, language)
    if renewal is not None:
        context = with_renewal(context, renewal, booking, amount)
    return context


def _activation_at(booking: dict[str, Any]) -> datetime | None:
    starts = [
        moment
        for moment in (
            parse_time(quote.get("policy_start_date"))
            for quote in booking.get("quotes") or []
            if quote.get("status") == "CONFIRMED"
        )
        if moment is not None
    ]
    return min(starts) if starts else None


def _dialect_insert(session: AsyncSession, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(model)


MESSAGES = cast(Table, Message.__table__)
# What `_row` sets of a message: every column but the id and those a new message leaves NULL.
MESSAGE_KEYS = (
    "public_id",
    "partner_id",
    "mode",
    "booking_id",
    "kind",
    "source_event",
    "event_id",
    "channel",
    "language",
    "recipient",
    "recipient_name",
    "sender_name",
    "sender_email",
    "reply_to",
    "sms_sender",
    "subject",
    "text",
    "html",
    "dedup_key",
    "status",
    "attempts",
    "scheduled_at",
    "next_attempt_at",
    "parts_sent",
    "error",
    "created_at",
    "updated_at",
)
# INSERT … ON CONFLICT (dedup_key) DO NOTHING: a repeat never fails the transaction.
_INSERTS = {
    name: Prepared(
        module.insert(MESSAGES).on_conflict_do_nothing(index_elements=["dedup_key"]),
        keys=MESSAGE_KEYS,
    )
    for name, module in (("postgresql", postgresql), ("sqlite", sqlite))
}


async def _insert(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Many messages, one statement compiled once."""
    connection = await session.connection()
    await _INSERTS[connection.dialect.name].executemany(connection, rows)


def _upsert(
    session: AsyncSession,
    model: Any,
    values: dict[str, Any],
    *,
    keys: list[str],
    changes: dict[str, Any],
) -> Any:
    """INSERT … ON CONFLICT DO UPDATE: two requests saving the same row never collide."""
    statement = _dialect_insert(session, model).values(**values)
    return statement.on_conflict_do_update(index_elements=keys, set_=changes)


@dataclass(frozen=True)
class Draft:
    """A message to create: what it is about and who gets it."""

    kind: str
    channel: str
    period: str
    scheduled_at: datetime


def _recipient(channel: str, booking: dict[str, Any]) -> tuple[str | None, str | None]:
    """The address of the policyholder on a channel, and an error when it is unusable."""
    holder = booking.get("policyholder") or {}
    if channel == EMAIL:
        email = holder.get("email")
        return (email, None) if email else (None, None)
    phone = holder.get("phone")
    if not phone:
        return None, None
    number = e164(phone, holder.get("country"))
    if number is None:
        return phone, f"'{phone}' is not a valid phone number."
    return number, None


async def _create(
    session: AsyncSession,
    event: Event,
    config: Config,
    booking: dict[str, Any],
    renewal: dict[str, Any] | None,
    amount: Any,
    drafts: list[Draft],
    *,
    force_queue: bool = False,
) -> list[str]:
    booking_id = str(booking.get("id") or event.resource_id)
    package = await session.get(QuotePackage, booking_id)
    language = templates.normalise_language(package.customer_language if package else None)
    overrides = await _overrides(session, config.partner.id, config.mode)
    now = _real_time.now()
    holder = booking.get("policyholder") or {}
    recipient_name = " ".join(
        part for part in (holder.get("first_name"), holder.get("last_name")) if part
    )
    rows = []
    for draft in drafts:
        recipient, problem = _recipient(draft.channel, booking)
        if recipient is None:
            continue
        override = _pick(overrides, draft.kind, draft.channel, language)
        try:
            context = _context(draft.kind, booking, renewal, amount, config, language)
            rendered = templates.render(draft.kind, draft.channel, override, context)
        except Exception:
            # A message must never fail the change that caused it.
            log.exception("could not render %s/%s of %s", draft.kind, draft.channel, booking_id)
            continue
        if config.mode == "live":
            next_at = max(now, draft.scheduled_at)
        else:
            # A sandbox may run on a test clock: the same distance from now in real time (the
            # dispatcher brings it forward when the test clock passes it).
            next_at = now + max(draft.scheduled_at - event.occurred_at, timedelta(0))
        status = FAILED if problem else (STORED if config.stores_only else QUEUED)
        rows.append(
            _row(
                config,
                event,
                booking_id,
                draft,
                language,
                recipient,
                recipient_name or None,
                rendered,
                status=status,
                error=problem,
                next_at=next_at,
                now=now,
            )
        )
    if not rows:
        return []
    await _insert(session, rows)
    return [row["public_id"] for row in rows]


def _row(
    config: Config,
    event: Event,
    booking_id: str | None,
    draft: Draft,
    language: str,
    recipient: str,
    recipient_name: str | None,
    rendered: Rendered,
    *,
    status: str,
    error: str | None,
    next_at: datetime,
    now: datetime,
) -> dict[str, Any]:
    return {
        "public_id": message_public_id(),
        "partner_id": config.partner.id,
        "mode": config.mode,
        "booking_id": booking_id,
        "kind": draft.kind,
        "source_event": event.type,
        "event_id": event.public_id,
        "channel": draft.channel,
        "language": language,
        "recipient": recipient,
        "recipient_name": recipient_name,
        "sender_name": config.branding.name,
        "sender_email": config.sender_email,
        "reply_to": config.branding.support_email,
        "sms_sender": config.sms_sender,
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
        "dedup_key": ":".join(
            (booking_id or event.resource_id, draft.kind, draft.period, draft.channel)
        ),
        "status": status,
        "attempts": 0,
        "scheduled_at": draft.scheduled_at,
        "next_attempt_at": next_at,
        "parts_sent": 0,
        "error": error,
        "created_at": now,
        "updated_at": now,
    }


async def fan_out(session: AsyncSession, event: Event) -> None:
    """Create the messages of a new event, in the transaction that wrote it."""
    if event.type not in HANDLED:
        return
    if event.type in OPERATOR_EVENTS:
        await _operator_notice(session, event)
        return
    if event.type == "BOOKING_CANCELLED" and event.payload.get("status") == "CANCELLED":
        await _cancel_activations(session, event)
    kinds = _kinds(event)
    if not kinds:
        return
    config = await _config_in_transaction(session, event.partner_id, event.mode)
    if not config.enabled:
        return
    kinds = [kind for kind in kinds if kind in config.events]
    channels = [channel for channel in templates.CHANNELS if channel in config.channels]
    if not kinds or not channels:
        return
    booking, renewal, amount = await _subject(session, event)
    if booking is None:
        return
    drafts: list[Draft] = []
    for kind in kinds:
        at = event.occurred_at
        if kind == "activation":
            at = max(_activation_at(booking) or at, at)
        period = _period(kind, event, renewal)
        drafts.extend(Draft(kind, channel, period, at) for channel in channels)
    await _create(session, event, config, booking, renewal, amount, drafts)


async def _cancel_activations(session: AsyncSession, event: Event) -> None:
    """A cancelled booking's activation that has not gone out never will."""
    await session.execute(
        update(Message)
        .where(
            Message.partner_id == event.partner_id,
            Message.mode == event.mode,
            Message.booking_id == event.resource_id,
            Message.kind == "activation",
            or_(
                Message.status == QUEUED,
                and_(Message.status == STORED, Message.scheduled_at > event.occurred_at),
            ),
        )
        .values(
            status=CANCELLED,
            error="The booking was cancelled before the cover started.",
            updated_at=_real_time.now(),
        )
        .execution_options(synchronize_session=False)
    )


async def _operator_notice(session: AsyncSession, event: Event) -> None:
    """Tell the partner, once, that one of its webhook endpoints was disabled."""
    config = await load_config(session, event.partner_id, event.mode)
    recipient = config.reply_to or config.partner.support_email
    if not recipient:
        # Else the partner's first dashboard user: whoever manages its endpoints there.
        recipient = await session.scalar(
            select(DashboardUser.email)
            .where(DashboardUser.partner_id == event.partner_id)
            .order_by(DashboardUser.id)
            .limit(1)
        )
    if not recipient:
        log.warning(
            "endpoint %s disabled: partner %s has no address to tell",
            event.payload.get("id"),
            event.partner_id,
        )
        return
    payload = event.payload
    context = {
        "language": templates.BUILT_IN_LANGUAGE,
        "partner": {**config.branding.json(), "name": config.partner.name},
        "endpoint": {
            "id": payload.get("id"),
            "url": payload.get("url"),
            "reason": payload.get("reason"),
            "mode": event.mode,
        },
    }
    rendered = templates.render_built_in("endpoint_disabled", EMAIL, context)
    now = _real_time.now()
    draft = Draft("endpoint_disabled", EMAIL, event.public_id, event.occurred_at)
    row = _row(
        config,
        event,
        None,
        draft,
        templates.BUILT_IN_LANGUAGE,
        recipient,
        config.partner.name,
        rendered,
        status=QUEUED,
        error=None,
        next_at=now,
        now=now,
    )
    row.update(
        sender_name="Coverline",
        sender_email=None,
        reply_to=None,
        dedup_key=f"endpoint:{event.resource_id}:endpoint_disabled:{event.public_id}:email",
    )
    await _insert(session, [row])


# ---------------------------------------------------------------------------- resend


def _resend_kind(event_name: str | None, package: QuotePackage, latest_kind: str | None) -> str:
    if event_name is None:
        if latest_kind is not None:
            return latest_kind
        if package.status == "CANCELLED":
            return "cancellation"
        if package.status == "CONFIRMED":
            return "purchase"
        raise ValidationFailed(
            errors=[
                f"No e-mail can be sent for booking {package.id} while it is "
                f"{package.status.lower().replace('_', ' ')}."
            ]
        )
    kind = EMAIL_EVENTS.get(event_name) or (event_name if event_name in KINDS else None)
    if kind is None:
        known = ", ".join([*EMAIL_EVENTS, *KINDS])
        raise ValidationFailed(errors=[f"Unknown event '{event_name}'; one of {known}."])
    return kind


async def resend_email(
    session: AsyncSession, partner_id: int, mode: str, booking_id: str, event_name: str | None
) -> Message:
    """`send_email`: one more e-mail of the booking's latest kind (or the one named), from the
    event that caused it. An explicit request: sent even when that event or the e-mail
    channel is off for automatic messages; a sandbox that does not send stores it."""
    package = await _booking(session, partner_id, mode, booking_id)
    latest_kind = await session.scalar(
        select(Message.kind)
        .where(
            Message.partner_id == partner_id,
            Message.mode == mode,
            Message.booking_id == package.id,
            Message.channel == EMAIL,
            Message.status != CANCELLED,
            # An activation still waiting for its cover to start is not one to send again.
            or_(Message.kind != "activation", Message.status != QUEUED),
        )
        .order_by(Message.id.desc())
        .limit(1)
    )
    kind = _resend_kind(event_name, package, latest_kind)
    name = event_name or KIND_EVENT_NAMES[kind]
    required = KIND_STATUSES.get(kind)
    if required is not None and package.status != required:
        raise ValidationFailed(
            errors=[f"{name} email can be only triggered for {required} bookings."]
        )
    source = await _latest_event(session, package, KIND_SOURCES[kind])
    if source is None or (kind in {"purchase", "activation"} and not _confirmed(source)):
        raise ValidationFailed(
            errors=[f"{name} email can be only triggered after a {name} event of the booking."]
        )
    booking, renewal, amount = await _subject(session, source)
    if booking is None:
        raise ValidationFailed(errors=[f"Booking {package.id} has no data to send."])
    if not (booking.get("policyholder") or {}).get("email"):
        raise ValidationFailed(errors=[f"Booking {package.id} has no policyholder e-mail."])
    config = await load_config(session, partner_id, mode)
    draft = Draft(kind, EMAIL, f"resend:{uuid.uuid4()}", source.occurred_at)
    created = await _create(session, source, config, booking, renewal, amount, [draft])
    message = await session.scalar(select(Message).where(Message.public_id == created[0]))
    assert message is not None
    return message


def _confirmed(event: Event) -> bool:
    return event.type == "BOOKING_PAYMENT_CONFIRMED" or event.payload.get("status") == "CONFIRMED"


# ---------------------------------------------------------------------------- the log


def message_json(message: Message) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return server_time(value) if value is not None else None

    return {
        "id": message.public_id,
        "booking": message.booking_id,
        "event": message.kind,
        "source_event": message.source_event,
        "channel": message.channel,
        "language": message.language,
        "recipient": message.recipient,
        "subject": message.subject,
        "text": message.text,
        "html": message.html,
        "status": message.status,
        "attempts": message.attempts,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "error": message.error,
        "scheduled_at": moment(message.scheduled_at),
        "next_attempt_at": moment(message.next_attempt_at) if message.status == QUEUED else None,
        "created_at": moment(message.created_at),
        "sent_at": moment(message.sent_at),
    }


async def list_messages(
    session: AsyncSession,
    partner_id: int,
    mode: str,
    *,
    booking: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[int, list[Message]]:
    if status is not None and status not in STATUSES:
        raise ValidationFailed(errors={"status": [f"One of {', '.join(STATUSES)}."]})
    where = [Message.partner_id == partner_id, Message.mode == mode]
    if booking is not None:
        where.append(Message.booking_id == booking)
    if status is not None:
        where.append(Message.status == status)
    count = await session.scalar(select(func.count()).select_from(Message).where(*where))
    rows = await session.scalars(
        select(Message).where(*where).order_by(Message.id.desc()).limit(limit).offset(offset)
    )
    return int(count or 0), list(rows)


async def get_message(session: AsyncSession, partner_id: int, mode: str, public_id: str) -> Message:
    message = await session.scalar(
        select(Message).where(
            Message.public_id == public_id,
            Message.partner_id == partner_id,
            Message.mode == mode,
        )
    )
    if message is None:
        raise NotFound(f"Message {public_id} not found.")
    return message
