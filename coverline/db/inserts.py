"""New domain rows written with prepared INSERTs, then kept in the session as rows it loaded.

The ORM's unit of work (its dependency sort, its bookkeeping per object, one execution per
table through SQLAlchemy's machinery) cost more than the rows it writes: 0.9 to 1.1 ms of an
instant booking's 4.6 ms of CPU for a package, its policyholder and its quote.
`insert_loaded` takes new (transient) objects, fills the columns they leave unset with the
columns' scalar defaults, writes each table's rows with one `Prepared` statement (tables in
the order of their foreign keys), and attaches the objects to the session as persistent, as
if a query had loaded them: the identity map finds them, and what the transaction changes on
them afterwards is an UPDATE like any other. Like loaded rows, they are expired when the
transaction rolls back (where the flush's new objects would be set apart again, unchanged):
they are not to be used after a failed change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Column, Table, insert, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, make_transient_to_detached

from coverline.db.base import Base
from coverline.db.prepared import Prepared

_STATEMENTS: dict[Table, Prepared] = {}
# Per mapped class: (attribute key, column) for each of its columns.
_PLANS: dict[type, list[tuple[str, Column[Any]]]] = {}
_DEFAULTS: dict[Column[Any], Any] = {}
# Each table's place in the order of the foreign keys (`MetaData.sorted_tables` sorts anew at
# every call), computed again if tables are added.
_ORDER: dict[Table, int] = {}


def _statement(table: Table) -> Prepared:
    prepared = _STATEMENTS.get(table)
    if prepared is None:
        keys = [column.key for column in table.columns]
        prepared = _STATEMENTS[table] = Prepared(insert(table), keys=keys)
    return prepared


def _default(column: Column[Any]) -> Any:
    """The value an INSERT leaving `column` out would store, when Python knows it."""
    if column in _DEFAULTS:
        return _DEFAULTS[column]
    default = column.default
    if column.server_default is not None or (default is not None and not default.is_scalar):
        raise TypeError(f"{column} has a default only the database or a function can give")
    if column.primary_key:
        raise TypeError(f"{column} is a primary key left unset")
    value = _DEFAULTS[column] = None if default is None else getattr(default, "arg", None)
    return value


def _plan(mapper: Mapper[Any]) -> list[tuple[str, Column[Any]]]:
    plan = _PLANS.get(mapper.class_)
    if plan is None:
        plan = _PLANS[mapper.class_] = [
            (attribute.key, cast("Column[Any]", attribute.columns[0]))
            for attribute in mapper.column_attrs
        ]
    return plan


def _order(table: Table) -> int:
    if len(_ORDER) != len(Base.metadata.tables):
        _ORDER.clear()
        _ORDER.update((each, place) for place, each in enumerate(Base.metadata.sorted_tables))
    return _ORDER[table]


async def insert_loaded(session: AsyncSession, objects: Sequence[Base]) -> None:
    """Write new objects, then attach them to `session` as persistent (see the module)."""
    rows: dict[Table, list[dict[str, Any]]] = {}
    for item in objects:
        state = inspect(item)
        if not state.transient:
            raise ValueError(f"{item!r} is not a new object")
        values = state.dict
        row = {}
        for key, column in _plan(state.mapper):
            if key not in values:
                # As a loaded row's value: no change event (the object is in no session yet,
                # and joins one with nothing pending).
                values[key] = _default(column)
            row[column.key] = values[key]
        rows.setdefault(state.mapper.local_table, []).append(row)  # type: ignore[arg-type]
    connection = await session.connection()
    for table in sorted(rows, key=_order):
        await _statement(table).executemany(connection, rows[table])
    # Detached first, all of them: adding one cascades to the others it refers to, which
    # must then be attached as rows that exist, not as new ones to insert.
    for item in objects:
        make_transient_to_detached(item)
    for item in objects:
        if item not in session:  # added already, as another's related object
            session.add(item)
