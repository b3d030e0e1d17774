"""Text from third parties (a webhook receiver's answer, an SMS provider's error, an SMTP
server's reply), made storable: PostgreSQL refuses U+0000 in text and JSON, and no driver
encodes a lone surrogate. Each becomes U+FFFD, as undecodable bytes do."""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def storable(text: str) -> str:
    """`text` with U+FFFD for each character no database stores (`text` itself when none)."""
    return _UNSTORABLE.sub("\ufffd", text)


def storable_or_none(text: str | None) -> str | None:
    return None if text is None else storable(text)
