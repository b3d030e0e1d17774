"""RFC 3339 in and out. A partner's offset is kept; server timestamps are UTC `Z`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=1)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=1)


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 date-time (or date: midnight UTC); the result is always aware."""
    text = value.strip()
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(text.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError("a date-time needs an offset (Z or +HH:MM)")
    return in_range(parsed)


def in_range(moment: datetime) -> datetime:
    """`moment` (aware), if it is stored in UTC and shown in any offset as a datetime still
    (a day's margin at each end of Python's years 1 to 9999); ValueError otherwise."""
    try:
        instant = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the date-time is out of range") from None
    if not _EARLIEST <= instant <= _LATEST:
        raise ValueError("the date-time is out of range")
    return moment


def offset_minutes(moment: datetime) -> int:
    offset = moment.utcoffset()
    return 0 if offset is None else int(offset.total_seconds() // 60)


def with_offset(moment: datetime, minutes: int) -> datetime:
    """The same instant shown in the partner's offset."""
    return moment.astimezone(timezone(timedelta(minutes=minutes)))


def partner_time(moment: datetime) -> str:
    """`2021-10-02T06:09:19+00:00`: the form XCover uses for policy dates."""
    return moment.isoformat()


def server_time(moment: datetime) -> str:
    """`2021-10-02T01:55:33.737094Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration_text(delta: timedelta) -> str:
    """`19 16:36:56`, Django's rendering of a duration, as in XCover's responses."""
    total = int(delta.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{sign}{days} {clock}" if days else f"{sign}{clock}"
