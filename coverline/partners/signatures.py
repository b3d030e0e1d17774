"""draft-cavage HTTP Signatures with HMAC, as XCover signs partner requests (API-CONTRACT §2).

No maintained library implements the draft; the whole scheme is a parser, a string to sign
and an HMAC.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

ALGORITHMS: dict[str, Callable[..., Any]] = {
    "hmac-sha256": hashlib.sha256,
    "hmac-sha384": hashlib.sha384,
    "hmac-sha512": hashlib.sha512,
    "hmac-sha1": hashlib.sha1,
}
REQUEST_TARGET = "(request-target)"

_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(?:,|$)')


class SignatureHeaderError(ValueError):
    """The Authorization header is not a well-formed Signature header."""


@dataclass(frozen=True)
class SignatureParams:
    key_id: str
    algorithm: str
    headers: tuple[str, ...]
    signature: bytes


def parse_signature_header(value: str) -> SignatureParams:
    """Parse `Signature keyId="…",algorithm="…",headers="…",signature="…"`."""
    if not value.startswith("Signature "):
        raise SignatureHeaderError("The Authorization header must start with 'Signature '.")
    rest = value[len("Signature ") :].strip()
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _PARAM.match(rest, position)
        if match is None:
            raise SignatureHeaderError("The Signature header parameters are malformed.")
        name = match.group(1)
        if name in params:
            raise SignatureHeaderError(f"The Signature parameter '{name}' is repeated.")
        params[name] = match.group(2)
        position = match.end()
    for required in ("keyId", "signature"):
        if not params.get(required):
            raise SignatureHeaderError(f"The Signature parameter '{required}' is missing.")
    algorithm = params.get("algorithm", "hmac-sha256").lower()
    headers = tuple(params.get("headers", "date").lower().split())
    if not headers:
        raise SignatureHeaderError("The Signature parameter 'headers' is empty.")
    encoded = params["signature"]
    if "%" in encoded:
        encoded = unquote(encoded)
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureHeaderError("The signature is not base64.") from exc
    return SignatureParams(params["keyId"], algorithm, headers, signature)


def string_to_sign(
    headers: tuple[str, ...],
    method: str,
    target: str,
    header_values: Mapping[str, str],
) -> str | None:
    """The signed text; None when a signed header is absent from the request."""
    lines = []
    for name in headers:
        if name == REQUEST_TARGET:
            lines.append(f"{REQUEST_TARGET}: {method.lower()} {target}")
            continue
        value = header_values.get(name)
        if value is None:
            return None
        lines.append(f"{name}: {value}")
    return "\n".join(lines)


def sign(secret: str, algorithm: str, message: str) -> bytes:
    return hmac.new(secret.encode(), message.encode(), ALGORITHMS[algorithm]).digest()


def encode_signature(digest: bytes) -> str:
    """Standard base64, then URL-encoded, as XCover's clients send it."""
    return quote(base64.b64encode(digest).decode(), safe="")


def authorization_header(
    key_id: str,
    secret: str,
    *,
    method: str,
    path: str,
    date: str,
    algorithm: str = "hmac-sha512",
    headers: tuple[str, ...] = (REQUEST_TARGET, "date"),
) -> str:
    """Build a signed Authorization header (used by tests, benchmarks and the CLI)."""
    message = string_to_sign(headers, method, path, {"date": date})
    assert message is not None
    signature = encode_signature(sign(secret, algorithm, message))
    return (
        f'Signature keyId="{key_id}",algorithm="{algorithm}",'
        f'headers="{" ".join(headers)}",signature="{signature}"'
    )


def verify(
    params: SignatureParams,
    secret: str,
    *,
    method: str,
    path: str,
    query: str,
    header_values: Mapping[str, str],
    raw_path: str | None = None,
) -> bool:
    """Constant-time check; `(request-target)` may cover the path with or without the query,
    and the path as sent (`raw_path`, percent-encoded) or decoded."""
    paths = [path] if raw_path is None or raw_path == path else [path, raw_path]
    targets = list(paths)
    if query and REQUEST_TARGET in params.headers:
        targets += [f"{sent}?{query}" for sent in paths]
    valid = False
    for target in targets:
        message = string_to_sign(params.headers, method, target, header_values)
        if message is None:
            return False
        expected = sign(secret, params.algorithm, message)
        valid |= hmac.compare_digest(expected, params.signature)
    return valid
