"""Verification of Coverline's webhooks over the raw request body, for its three signature
schemes:

- `standard` (Standard Webhooks): `webhook-signature: v1,<base64 HMAC-SHA256 of
  "id.timestamp.body">` keyed with the base64 key inside the `whsec_…` secret; the
  `webhook-timestamp` must be within the tolerance. Signs the body, the id and the time.
- `xcover`: `Authorization: Signature keyId=…,algorithm=…,headers="date",signature=…` over
  `date: <Date header>`, keyed with the whole `whsec_…` secret; the Date must be within the
  tolerance. Signs the time only, NOT the body: prefer `standard` where you can choose.
- `mycover`: `x-mycoverai-signature`, the hex HMAC-SHA512 of the body keyed with the
  partner's secret API key. Signs the body only: there is no timestamp to check, so drop
  replays by `webhook-id` (or the body's `reference` and `id`).

Every comparison is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from ._core import decode_json
from ._errors import WebhookVerificationError
from ._models import WebhookEndpoint, WebhookEvent, WebhookSecret
from ._signing import hmac_digest, parse_signature_header

SCHEMES = ("standard", "xcover", "mycover")
DEFAULT_TOLERANCE = 300.0
XCOVER_ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512")

Headers = Union[Mapping[str, str], Iterable[Tuple[str, str]]]
Body = Union[bytes, bytearray, memoryview, str]


def _lower_headers(headers: Headers) -> dict[str, str]:
    # Mappings, and header objects with items() (werkzeug, email.message), or (name, value) pairs.
    items: Iterable[Tuple[str, str]]
    items = headers.items() if hasattr(headers, "items") else headers
    lowered: dict[str, str] = {}
    for name, value in items:
        lowered[str(name).lower()] = str(value)
    return lowered


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise WebhookVerificationError(f"The {name} header is missing.")
    return value


def _standard_key(secret: str) -> bytes:
    encoded = secret[len("whsec_") :] if secret.startswith("whsec_") else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("A standard webhook secret is 'whsec_' followed by base64.") from None


class Webhook:
    """A verifier for one endpoint's webhooks.

    `secret` is the endpoint's secret (`whsec_…`; for the `mycover` scheme the partner's
    secret API key), or several secrets during a rotation: a webhook passes when any of them
    verifies it. `scheme` is the endpoint's `signature` (`standard`, `xcover` or `mycover`).
    `key`, for the `xcover` scheme, is the endpoint's key: the signature's `keyId` must
    equal it. `tolerance` is how far, in seconds, the signed time may be from now.
    """

    def __init__(
        self,
        secret: Union[str, Sequence[str]],
        *,
        scheme: str = "standard",
        key: Optional[str] = None,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}.")
        secrets: List[str] = [secret] if isinstance(secret, str) else list(secret)
        if not secrets or not all(secrets):
            raise ValueError("Give the endpoint's secret.")
        self.scheme = scheme
        self.key = key
        self.tolerance = tolerance
        self._secrets = secrets
        self._standard_keys = [_standard_key(s) for s in secrets] if scheme == "standard" else []

    @classmethod
    def from_endpoint(
        cls,
        endpoint: Union[WebhookEndpoint, WebhookSecret],
        *,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> Webhook:
        """A verifier from an endpoint's signing material (the answer of
        `client.webhooks.create`, `rotate_secret` or `secret`)."""
        if not endpoint.secret:
            raise ValueError("This endpoint answer carries no secret; use webhooks.secret(id).")
        return cls(
            endpoint.secret, scheme=endpoint.signature, key=endpoint.key, tolerance=tolerance
        )

    def verify(self, body: Body, headers: Headers, *, now: Optional[float] = None) -> WebhookEvent:
        """Check the signature of a webhook over its raw body and return the event.

        `body` is the request body exactly as received (bytes; text is encoded as UTF-8),
        never a re-serialized parse of it. `headers` is any mapping (or list of pairs) of
        the request headers, in any case. `now` (epoch seconds) replaces the current time.
        Raises `WebhookVerificationError` when the webhook does not verify.
        """
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        lowered = _lower_headers(headers)
        moment = time.time() if now is None else now
        signed_at: Optional[datetime]
        if self.scheme == "standard":
            signed_at = self._verify_standard(raw, lowered, moment)
        elif self.scheme == "xcover":
            signed_at = self._verify_xcover(lowered, moment)
        else:
            self._verify_mycover(raw, lowered)
            signed_at = _timestamp(lowered.get("webhook-timestamp"))
        try:
            document = decode_json(raw)
        except ValueError:
            raise WebhookVerificationError("The webhook body is not JSON.") from None
        if not isinstance(document, Mapping):
            raise WebhookVerificationError("The webhook body is not a JSON object.")
        return WebhookEvent.from_body(
            document,
            scheme=self.scheme,
            webhook_id=lowered.get("webhook-id"),
            timestamp=signed_at,
        )

    # ------------------------------------------------------------------------- the schemes

    def _check_time(self, signed: float, now: float) -> None:
        if signed < now - self.tolerance:
            raise WebhookVerificationError("The webhook's timestamp is too old.")
        if signed > now + self.tolerance:
            raise WebhookVerificationError("The webhook's timestamp is too far in the future.")

    def _verify_standard(self, body: bytes, headers: Mapping[str, str], now: float) -> datetime:
        message_id = _required(headers, "webhook-id")
        stamp = _required(headers, "webhook-timestamp")
        signatures = _required(headers, "webhook-signature")
        try:
            seconds = int(stamp)
        except ValueError:
            raise WebhookVerificationError(
                "The webhook-timestamp header is not a number."
            ) from None
        signed = f"{message_id}.{seconds}.".encode() + body
        offered = []
        for entry in signatures.split():
            version, _, encoded = entry.partition(",")
            if version != "v1":
                continue
            try:
                offered.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError):
                continue
        valid = False
        for key in self._standard_keys:
            expected = hmac.new(key, signed, hashlib.sha256).digest()
            for candidate in offered:
                valid |= hmac.compare_digest(expected, candidate)
        if not valid:
            raise WebhookVerificationError("No webhook signature matches.")
        self._check_time(seconds, now)
        return datetime.fromtimestamp(seconds, timezone.utc)

    def _verify_xcover(self, headers: Mapping[str, str], now: float) -> datetime:
        params = parse_signature_header(_required(headers, "authorization"))
        if params.algorithm not in XCOVER_ALGORITHMS:
            raise WebhookVerificationError(f"Unsupported algorithm {params.algorithm!r}.")
        if "date" not in params.headers:
            raise WebhookVerificationError("The signature does not cover the Date header.")
        unsupported = [name for name in params.headers if name not in headers]
        if unsupported:
            raise WebhookVerificationError(
                f"The signed headers {', '.join(unsupported)} are not in the request."
            )
        if self.key is not None and not _same(params.key_id, self.key):
            raise WebhookVerificationError("The signature's keyId is not this endpoint's key.")
        api_key = headers.get("x-api-key")
        if api_key is not None and not _same(api_key, params.key_id):
            raise WebhookVerificationError("X-Api-Key does not match the signature's keyId.")
        message = "\n".join(f"{name}: {headers[name]}" for name in params.headers)
        valid = False
        for secret in self._secrets:
            expected = hmac_digest(secret, params.algorithm, message)
            valid |= hmac.compare_digest(expected, params.signature)
        if not valid:
            raise WebhookVerificationError("The webhook signature does not match.")
        try:
            sent = parsedate_to_datetime(headers["date"])
        except (TypeError, ValueError, IndexError):
            raise WebhookVerificationError("The Date header is not an HTTP date.") from None
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=timezone.utc)
        self._check_time(sent.timestamp(), now)
        return sent

    def _verify_mycover(self, body: bytes, headers: Mapping[str, str]) -> None:
        offered = _required(headers, "x-mycoverai-signature").strip().lower()
        valid = False
        for secret in self._secrets:
            expected = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
            valid |= _same(expected, offered)
        if not valid:
            raise WebhookVerificationError("The webhook signature does not match.")


def _same(left: str, right: str) -> bool:
    """Constant-time equality of two texts (any characters)."""
    return hmac.compare_digest(left.encode("utf-8"), right.encode("utf-8"))


def _timestamp(value: Optional[str]) -> Optional[datetime]:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(int(value), timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None


def verify_webhook(
    body: Body,
    headers: Headers,
    *,
    secret: Union[str, Sequence[str]],
    scheme: str = "standard",
    key: Optional[str] = None,
    tolerance: float = DEFAULT_TOLERANCE,
    now: Optional[float] = None,
) -> WebhookEvent:
    """`Webhook(secret, scheme=…, key=…, tolerance=…).verify(body, headers, now=now)`."""
    verifier = Webhook(secret, scheme=scheme, key=key, tolerance=tolerance)
    return verifier.verify(body, headers, now=now)
