"""Public identifiers: random, URL-safe and unguessable (API-CONTRACT §6)."""

from __future__ import annotations

import secrets
import string
import uuid

_UPPER = string.ascii_uppercase + string.digits
_MIXED = string.ascii_letters + string.digits


def _group(alphabet: str, size: int = 5) -> str:
    """`size` characters drawn uniformly from `alphabet`: random bytes read in one call (not
    one call per character), those at or above the largest multiple of the alphabet's length
    set aside so that every character is equally likely."""
    limit = 256 - 256 % len(alphabet)
    chosen: list[str] = []
    while len(chosen) < size:
        for byte in secrets.token_bytes(size + 3):
            if byte < limit:
                chosen.append(alphabet[byte % len(alphabet)])
                if len(chosen) == size:
                    break
    return "".join(chosen)


def package_id() -> str:
    """`XXXXX-XXXXX-INS`: a quote package, which keeps its id when booked."""
    return f"{_group(_UPPER)}-{_group(_UPPER)}-INS"


def update_id() -> str:
    return f"{_group(_MIXED)}-{_group(_MIXED)}-{_group(_MIXED)}-UPD"


def cancellation_id() -> str:
    return f"{_group(_MIXED)}-{_group(_MIXED)}-{_group(_MIXED)}-CCL"


def renewal_id() -> str:
    return f"{_group(_MIXED)}-{_group(_MIXED)}-REN"


def security_token() -> str:
    return "-".join(_group(_MIXED) for _ in range(4))


def quote_id() -> str:
    return str(uuid.uuid4())


def partner_code() -> str:
    return _group(_UPPER)


def event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"
