"""SMS: phone numbers in E.164, the GSM-7/UCS-2 arithmetic of texts, and the providers.

Each provider speaks its public REST API over aiohttp:

- Twilio (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form fields `To`, `From`
  or `MessagingServiceSid`, `Body`; HTTP Basic auth with the Account SID and Auth Token).
  Twilio takes up to 1,600 characters and splits them into concatenated segments itself:
  one request per message; a longer text is cut to 1,600 characters, ending in "…".
- Africa's Talking (`POST /version1/messaging`, form fields `username`, `to`, `message`,
  `from`; headers `apiKey` and `Accept: application/json`). A text longer than one SMS
  (160 GSM-7 characters, 70 when it needs UCS-2) is sent as several self-contained SMS of at
  most that size, each numbered `(1/3) …`, one request each. A retry resumes at the first
  part not yet accepted, so an accepted part is not sent again.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import phonenumbers

# GSM 03.38: the basic set, and the extension set whose characters take two septets.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENSION = frozenset("^{}\\[~]|€\f")
SINGLE_GSM = 160
SINGLE_UCS2 = 70
TWILIO_MAX = 1600


class SmsError(Exception):
    """A provider refused or failed a send; `permanent` errors are not retried."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        self.permanent = permanent
        super().__init__(message)


def e164(phone: str | None, country: str | None = None) -> str | None:
    """The number in E.164 (`+2348031234567`), or None when it is not a valid number."""
    if not phone:
        return None
    try:
        parsed = phonenumbers.parse(phone, (country or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    formatted: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return formatted


def is_gsm7(text: str) -> bool:
    return all(char in GSM_BASIC or char in GSM_EXTENSION for char in text)


def units(text: str, gsm: bool) -> int:
    """Length as the network counts it: septets for GSM-7, UTF-16 code units for UCS-2."""
    if gsm:
        return sum(2 if char in GSM_EXTENSION else 1 for char in text)
    return sum(2 if ord(char) > 0xFFFF else 1 for char in text)


def _cut(text: str, budget: int, gsm: bool) -> tuple[str, str]:
    """The longest head of `text` within `budget` units, at a space when there is one."""
    used = 0
    end = 0
    for index, char in enumerate(text):
        cost = units(char, gsm)
        if used + cost > budget:
            break
        used += cost
        end = index + 1
    if end >= len(text):
        return text, ""
    space = text.rfind(" ", 0, end + 1)
    if space > 0:
        return text[:space].rstrip(), text[space + 1 :].lstrip()
    return text[:end], text[end:]


def split_parts(text: str) -> list[str]:
    """Self-contained SMS of at most one message each, numbered when there are several."""
    text = " ".join(text.split())
    gsm = is_gsm7(text)
    limit = SINGLE_GSM if gsm else SINGLE_UCS2
    if units(text, gsm) <= limit:
        return [text]
    estimate = math.ceil(units(text, gsm) / limit)
    while True:
        prefix = len(f"({estimate}/{estimate}) ")
        parts: list[str] = []
        rest = text
        while rest:
            head, rest = _cut(rest, limit - prefix, gsm)
            parts.append(head)
        if len(str(len(parts))) <= len(str(estimate)):
            return [f"({n}/{len(parts)}) {part}" for n, part in enumerate(parts, 1)]
        estimate = len(parts)


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


class SmsProvider(Protocol):
    @property
    def name(self) -> str: ...

    def parts(self, text: str) -> list[str]:
        """The requests a text takes, in order."""
        ...

    async def send_part(
        self, http: aiohttp.ClientSession, to: str, text: str, sender: str | None
    ) -> str:
        """Send one part; its provider message id. Raises SmsError."""
        ...


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500 or status in {401, 403, 408}


async def _json(response: aiohttp.ClientResponse) -> Any:
    try:
        return await response.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        return None


@dataclass(frozen=True)
class TwilioProvider:
    account_sid: str
    auth_token: str
    sender: str | None
    messaging_service_sid: str | None = None
    base_url: str = "https://api.twilio.com"
    timeout: float = 15.0
    name: str = "twilio"

    def parts(self, text: str) -> list[str]:
        return [truncate(text.strip(), TWILIO_MAX)]

    def _authorization(self) -> str:
        credentials = f"{self.account_sid}:{self.auth_token}".encode()
        return "Basic " + base64.b64encode(credentials).decode("ascii")

    async def send_part(
        self, http: aiohttp.ClientSession, to: str, text: str, sender: str | None
    ) -> str:
        form = {"To": to, "Body": text}
        if sender or self.sender:
            form["From"] = sender or self.sender or ""
        elif self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        else:
            raise SmsError("No Twilio sender: set COVERLINE_TWILIO_FROM.", permanent=True)
        url = f"{self.base_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        async with http.post(
            url,
            data=form,
            headers={"Accept": "application/json", "Authorization": self._authorization()},
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        ) as response:
            body = await _json(response)
            if 200 <= response.status < 300 and isinstance(body, dict) and body.get("sid"):
                return str(body["sid"])
            detail = body.get("message") if isinstance(body, dict) else None
            code = body.get("code") if isinstance(body, dict) else None
            raise SmsError(
                f"Twilio answered {response.status}"
                + (f" (error {code})" if code else "")
                + (f": {detail}" if detail else "."),
                permanent=not _retryable(response.status),
            )


# Africa's Talking per-recipient status codes: 100 Processed, 101 Sent, 102 Queued succeed;
# these mean the number itself cannot be reached, so a retry cannot help.
AT_SUCCESS = {100, 101, 102}
AT_PERMANENT = {403, 404, 406}


@dataclass(frozen=True)
class AfricasTalkingProvider:
    username: str
    api_key: str
    sender: str | None
    base_url: str = "https://api.africastalking.com"
    timeout: float = 15.0
    name: str = "africastalking"

    def parts(self, text: str) -> list[str]:
        return split_parts(text)

    async def send_part(
        self, http: aiohttp.ClientSession, to: str, text: str, sender: str | None
    ) -> str:
        form = {"username": self.username, "to": to, "message": text}
        if sender or self.sender:
            form["from"] = sender or self.sender or ""
        async with http.post(
            f"{self.base_url.rstrip('/')}/version1/messaging",
            data=form,
            headers={"apiKey": self.api_key, "Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        ) as response:
            body = await _json(response)
            if not 200 <= response.status < 300:
                text_body = (
                    body
                    if body is not None
                    else (await response.read())[:200].decode("utf-8", "replace")
                )
                raise SmsError(
                    f"Africa's Talking answered {response.status}: {text_body}",
                    permanent=not _retryable(response.status),
                )
        data = body.get("SMSMessageData") if isinstance(body, dict) else None
        recipients = data.get("Recipients") if isinstance(data, dict) else None
        if not recipients:
            summary = data.get("Message") if isinstance(data, dict) else body
            raise SmsError(f"Africa's Talking accepted no recipient: {summary}")
        recipient = recipients[0]
        code = recipient.get("statusCode")
        if code in AT_SUCCESS and recipient.get("messageId"):
            return str(recipient["messageId"])
        raise SmsError(
            f"Africa's Talking status {code}: {recipient.get('status')}",
            permanent=code in AT_PERMANENT,
        )
