"""The three signature schemes of outgoing webhooks (API-CONTRACT §8)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from email.utils import formatdate
from functools import lru_cache

from coverline.partners.signatures import encode_signature, sign

XCOVER = "xcover"
MYCOVER = "mycover"
STANDARD = "standard"
SCHEMES = (XCOVER, MYCOVER, STANDARD)


def new_secret() -> str:
    """`whsec_` + base64 of 24 random bytes (Standard Webhooks' form; XCover signing uses the
    whole string as its HMAC key)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def new_key() -> str:
    return "whk_" + secrets.token_hex(12)


def _standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@lru_cache(maxsize=1024)
def _xcover_date_signature(secret: str, key: str, seconds: int) -> tuple[str, str]:
    """XCover signs only the Date header: one signature per key and second, whatever the
    number of webhooks sent in that second."""
    date = formatdate(seconds, usegmt=True)
    signature = encode_signature(sign(secret, "hmac-sha256", f"date: {date}"))
    authorization = (
        f'Signature keyId="{key}",algorithm="hmac-sha256",headers="date",signature="{signature}"'
    )
    return date, authorization


def sign_headers(
    scheme: str,
    *,
    body: bytes,
    message_id: str,
    timestamp: float,
    key: str,
    secrets_in_use: list[str],
) -> dict[str, str]:
    """Headers for one attempt. `secrets_in_use` is the current secret first, then a previous
    one still valid after a rotation (Standard Webhooks sends a signature for each)."""
    seconds = int(timestamp)
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(seconds),
    }
    if scheme == MYCOVER:
        digest = hmac.new(secrets_in_use[0].encode(), body, hashlib.sha512).hexdigest()
        headers["x-mycoverai-signature"] = digest
    elif scheme == XCOVER:
        date, authorization = _xcover_date_signature(secrets_in_use[0], key, seconds)
        headers["Date"] = date
        headers["X-Api-Key"] = key
        headers["Authorization"] = authorization
    else:
        headers["webhook-signature"] = " ".join(
            _standard_signature(secret, message_id, seconds, body) for secret in secrets_in_use
        )
    return headers
