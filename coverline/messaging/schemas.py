"""Request bodies of the messaging endpoints."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from coverline.kit.http import ResponseBody
from coverline.kit.validation import normalise_email
from coverline.messaging.templates import CHANNELS, KINDS

DEFAULT_CHANNELS = ["email"]
DEFAULT_COLOUR = "#1a56db"
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
# An alphanumeric sender id (at most 11 characters, at least one letter) or a phone number.
_SMS_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$|^\+[1-9][0-9]{6,14}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _choices(values: list[str], allowed: tuple[str, ...], what: str) -> list[str]:
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise ValueError(f"Unknown {what}: {', '.join(unknown)}; one of {', '.join(allowed)}.")
    return [value for value in allowed if value in values]


class SettingsFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("channels", check_fields=False)
    @classmethod
    def _channels(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _choices(value, CHANNELS, "channels")

    @field_validator("events", check_fields=False)
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _choices(value, KINDS, "events")

    @field_validator("sender_name", check_fields=False)
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _CONTROL.search(value):
            raise ValueError("Line breaks and control characters are not allowed.")
        return value.strip() or None

    @field_validator("sender_email", "reply_to", check_fields=False)
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else normalise_email(value)

    @field_validator("support_url", check_fields=False)
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^\s/$.?#][^\s]*$", value) or _CONTROL.search(value):
            raise ValueError("Enter an http or https URL.")
        return value

    @field_validator("brand_colour", check_fields=False)
    @classmethod
    def _colour(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _COLOUR.fullmatch(value):
            raise ValueError("A colour is #RRGGBB, e.g. #1a56db.")
        return value.lower()

    @field_validator("sms_sender", check_fields=False)
    @classmethod
    def _sms_sender(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _SMS_SENDER.fullmatch(value):
            raise ValueError(
                "An SMS sender is up to 11 letters, digits and spaces, or an E.164 number."
            )
        return value


class SettingsIn(SettingsFields):
    """The whole of a partner's messaging settings for the calling mode (PUT replaces)."""

    enabled: bool = Field(default=True, description="Off: no customer message at all.")
    channels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CHANNELS), description="email and/or sms."
    )
    events: list[str] = Field(
        default_factory=lambda: list(KINDS), description="The message kinds to send."
    )
    sender_name: str | None = Field(default=None, max_length=100)
    sender_email: str | None = Field(default=None, max_length=320)
    reply_to: str | None = Field(default=None, max_length=320)
    support_url: str | None = Field(default=None, max_length=2048)
    brand_colour: str = DEFAULT_COLOUR
    sms_sender: str | None = Field(default=None, max_length=16)
    send_in_sandbox: bool = Field(
        default=False, description="Sandbox only: send messages instead of only storing them."
    )


class SettingsPatch(SettingsFields):
    enabled: bool | None = None
    channels: list[str] | None = None
    events: list[str] | None = None
    sender_name: str | None = Field(default=None, max_length=100)
    sender_email: str | None = Field(default=None, max_length=320)
    reply_to: str | None = Field(default=None, max_length=320)
    support_url: str | None = Field(default=None, max_length=2048)
    brand_colour: str | None = None
    sms_sender: str | None = Field(default=None, max_length=16)
    send_in_sandbox: bool | None = None


class TemplateIn(BaseModel):
    """A template: e-mail has a subject, a text and optionally an HTML part (without one, the
    text is shown in the partner's layout); SMS has a text only."""

    model_config = ConfigDict(extra="forbid")

    subject: str | None = None
    text: str
    html: str | None = None


class PreviewIn(BaseModel):
    """A preview of the saved (or built-in) template, or of a draft given here; with the
    sample data, or with a booking's."""

    model_config = ConfigDict(extra="forbid")

    booking: str | None = Field(default=None, max_length=64)
    subject: str | None = None
    text: str | None = None
    html: str | None = None

    def draft(self) -> dict[str, Any] | None:
        if self.text is None and self.subject is None and self.html is None:
            return None
        return {"subject": self.subject, "text": self.text, "html": self.html}


class SendEmailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str | None = Field(
        default=None,
        description="BOOKING_CREATED, BOOKING_UPDATED, BOOKING_CANCELLED, RENEWAL_* or a "
        "message kind; the booking's latest when absent.",
    )


class EffectiveSettingsOut(ResponseBody):
    sender_name: str | None
    reply_to: str | None
    sending: bool


class SettingsOut(ResponseBody):
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
    effective: EffectiveSettingsOut


class TemplateOut(ResponseBody):
    event: str
    channel: str
    language: str
    source: Literal["built_in", "partner"]
    subject: str | None
    text: str
    html: str | None
    updated_at: str | None


class TemplateListOut(ResponseBody):
    count: int
    variables: dict[str, str]
    results: list[TemplateOut]


class PreviewOut(ResponseBody):
    event: str
    channel: str
    language: str
    subject: str | None
    text: str
    html: str | None


class MessageOut(ResponseBody):
    id: str
    booking: str | None
    event: str
    channel: str
    language: str | None
    recipient: str | None
    subject: str | None
    text: str | None
    html: str | None
    status: str
    attempts: int
    error: str | None
    scheduled_at: str | None
    next_attempt_at: str | None
    created_at: str | None
    sent_at: str | None


class MessageListOut(ResponseBody):
    count: int
    results: list[MessageOut]


class ResentEmailOut(ResponseBody):
    id: str
    event: str
    status: str
