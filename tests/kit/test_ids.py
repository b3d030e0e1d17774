"""Public identifiers: their shapes, and characters drawn without bias from random bytes."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

import pytest

from coverline.kit import ids

UPPER = string.ascii_uppercase + string.digits
MIXED = string.ascii_letters + string.digits


def test_shapes() -> None:
    assert re.fullmatch(r"[A-Z0-9]{5}-[A-Z0-9]{5}-INS", ids.package_id())
    assert re.fullmatch(r"[A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){2}-UPD", ids.update_id())
    assert re.fullmatch(r"[A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){2}-CCL", ids.cancellation_id())
    assert re.fullmatch(r"[A-Za-z0-9]{5}-[A-Za-z0-9]{5}-REN", ids.renewal_id())
    assert re.fullmatch(r"[A-Za-z0-9]{5}(-[A-Za-z0-9]{5}){3}", ids.security_token())
    assert re.fullmatch(r"[A-Z0-9]{5}", ids.partner_code())
    assert re.fullmatch(r"evt_[0-9a-f]{24}", ids.event_id())
    assert len({ids.package_id() for _ in range(1000)}) == 1000


def _bytes_from(chunks: list[bytes]) -> Iterator[bytes]:
    yield from chunks


def test_bytes_that_would_bias_a_character_are_set_aside(monkeypatch: pytest.MonkeyPatch) -> None:
    # 36 characters: bytes 252..255 would make the first four characters likelier.
    # 62 characters: bytes 248..255 likewise.
    chunks = _bytes_from(
        [
            bytes([255, 252, 0, 35, 251, 253, 254, 255]),  # 0->A, 35->9, 251 % 36 = 35 -> 9
            bytes([254, 36, 1, 2, 3, 4, 5, 6]),  # 36 % 36 = 0 -> A, 1 -> B: five, done
        ]
    )
    asked: list[int] = []

    def token_bytes(size: int) -> bytes:
        asked.append(size)
        return next(chunks)

    monkeypatch.setattr(ids.secrets, "token_bytes", token_bytes)
    assert ids.partner_code() == "A99AB"
    # 5 characters asked with 3 spare bytes each time; the second read was needed.
    assert asked == [8, 8]

    chunks = _bytes_from([bytes([248, 255, 247, 61, 62, 0, 123, 200])])
    asked.clear()
    # 247 % 62 = 61 -> '9'; 61 -> '9'; 62 -> 'a'; 0 -> 'a'; 123 % 62 = 61 -> '9'
    assert ids._group(MIXED) == "99aa9"
    assert asked == [8]


def test_every_character_is_drawn_about_equally() -> None:
    """Over 360,000 characters each of the 36 appears about 10,000 times (standard deviation
    about 99): the band is 5 of them either side. A modulo bias (bytes 252..255 kept) would
    give the first four characters about 11,250 each, 12 deviations out."""
    counts = dict.fromkeys(UPPER, 0)
    for _ in range(72000):
        for character in ids._group(UPPER):
            counts[character] += 1
    assert sum(counts.values()) == 360000
    assert all(9500 <= count <= 10500 for count in counts.values()), counts
