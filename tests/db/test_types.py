"""`UTCDateTime` binds on SQLite the very text SQLAlchemy's own two steps would store (its
`process_bind_param`, then SQLite's DATETIME formatting), for any aware datetime: stored text
is compared as text by SQLite (`ORDER BY`, `<`), so a different text would be a different
order, not only a different look."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import TypeDecorator
from sqlalchemy.dialects import postgresql, sqlite

from coverline.db.base import UTCDateTime

SQLITE = sqlite.dialect()
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Far enough from datetime's limits that moving to UTC stays within them.
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)


def _ours() -> object:
    return UTCDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)


def _sqlalchemys() -> object:
    # TypeDecorator's own composition of process_bind_param and the SQLite type's processor.
    return TypeDecorator.bind_processor(UTCDateTime().dialect_impl(SQLITE), SQLITE)


@given(moments)
def test_the_same_text_as_sqlalchemys_two_steps(moment: datetime) -> None:
    ours, theirs = _ours(), _sqlalchemys()
    assert callable(ours) and callable(theirs)
    assert ours is not theirs
    assert ours(moment) == theirs(moment)


def test_known_values() -> None:
    ours = _ours()
    assert callable(ours)
    lagos = timezone(timedelta(hours=1))
    assert ours(datetime(2026, 12, 4, 21, 30, 5, tzinfo=lagos)) == "2026-12-04 20:30:05.000000"
    assert ours(datetime(999, 1, 1, 0, 0, 0, 7, tzinfo=UTC)) == "0999-01-01 00:00:00.000007"
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        ours(datetime(2026, 12, 4, 21, 30))


def test_other_databases_keep_sqlalchemys_processing() -> None:
    dialect = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]
    processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    lagos = timezone(timedelta(hours=1))
    moment = datetime(2026, 12, 4, 21, 30, 5, tzinfo=lagos)
    value = processor(moment) if processor is not None else moment
    assert value == moment and value.tzinfo is not None
    assert UTCDateTime().process_bind_param(moment, dialect) == moment.astimezone(UTC)
