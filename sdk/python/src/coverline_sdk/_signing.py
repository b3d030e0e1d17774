"""draft-cavage HTTP Signatures with HMAC, the way Coverline (and XCover) authenticate partner
requests, and the `Authorization: Signature …` header parser shared with webhook verification."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from email.utils import formatdate
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence
from urllib.parse import quote, unquote

from ._errors import WebhookVerificationError

ALGORITHMS: dict[str, Callable[..., Any]] = {
    "hmac-sha256": hashlib.sha256,
    "hmac-sha384": hashlib.sha384,
    "hmac-sha512": hashlib.sha512,
    "hmac-sha1": hashlib.sha1,
}
REQUEST_TARGET = "(request-target)"
DEFAULT_HEADERS = (REQUEST_TARGET, "date")
_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


def http_date(at: Optional[float] = None) -> str:
    """An RFC 7231 date (`Tue, 01 Jan 2019 00:00:00 GMT`) for `at`, by default now."""
    return formatdate(time.time() if at is None else at, usegmt=True)


def string_to_sign(
    headers: Sequence[str], *, method: str, target: str, header_values: Mapping[str, str]
) -> str:
    """One `name: value` line per signed header, joined with newlines."""
    lines = []
    for name in headers:
        if name == REQUEST_TARGET:
            lines.append(f"{REQUEST_TARGET}: {method.lower()} {target}")
        else:
            lines.append(f"{name}: {header_values[name]}")
    return "\n".join(lines)


def hmac_digest(secret: str, algorithm: str, message: str) -> bytes:
    try:
        digestmod = ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(f"Unsupported signature algorithm {algorithm!r}.") from None
    return hmac.new(secret.encode(), message.encode(), digestmod).digest()


def signature_header(
    key_id: str,
    secret: str,
    *,
    method: str,
    target: str,
    date: str,
    algorithm: str = "hmac-sha512",
    headers: Sequence[str] = DEFAULT_HEADERS,
) -> str:
    """The `Authorization` value of a signed request.

    `target` is the path with its query string, as the draft signs it; the signature is
    standard base64, URL-encoded, as XCover's clients send it.
    """
    message = string_to_sign(headers, method=method, target=target, header_values={"date": date})
    encoded = quote(base64.b64encode(hmac_digest(secret, algorithm, message)).decode(), safe="")
    return (
        f'Signature keyId="{key_id}",algorithm="{algorithm}",'
        f'headers="{" ".join(headers)}",signature="{encoded}"'
    )


class SignatureParams(NamedTuple):
    key_id: str
    algorithm: str
    headers: tuple[str, ...]
    signature: bytes


def parse_signature_header(value: str) -> SignatureParams:
    """Parse `Signature keyId="…",algorithm="…",headers="…",signature="…"`."""
    if not value.startswith("Signature "):
        raise WebhookVerificationError("The Authorization header is not a Signature header.")
    rest = value[len("Signature ") :].strip()
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None:
            raise WebhookVerificationError("The Signature header is malformed.")
        if match.group(1) in params:
            raise WebhookVerificationError(f"The Signature parameter {match.group(1)} repeats.")
        params[match.group(1)] = match.group(2)
        position = match.end()
    if not params.get("keyId") or not params.get("signature"):
        raise WebhookVerificationError("The Signature header lacks keyId or signature.")
    encoded = params["signature"]
    if "%" in encoded:
        encoded = unquote(encoded)
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("The signature is not base64.") from None
    return SignatureParams(
        key_id=params["keyId"],
        algorithm=params.get("algorithm", "hmac-sha256").lower(),
        headers=tuple(params.get("headers", "date").lower().split()),
        signature=signature,
    )
