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
from sqlalchemy.orm import make_transient_to_detached

from coverline.db.base import Base
from coverline.db.prepared import Prepared

_STATEMENTS: dict[Table, Prepared] = {}


def _statement(table: Table) -> Prepared:
    prepared = _STATEMENTS.get(table)
    if prepared is None:
        keys = [column.key for column in table.columns]
        prepared = _STATEMENTS[table] = Prepared(insert(table), keys=keys)
    return prepared


def _default(column: Column[Any]) -> Any:
    """The value an INSERT leaving `column` out would store, when Python knows it."""
    default = column.default
    if column.server_default is not None or (default is not None and not default.is_scalar):
        raise TypeError(f"{column} has a default only the database or a function can give")
    if column.primary_key:
        raise TypeError(f"{column} is a primary key left unset")
    return None if default is None else getattr(default, "arg", None)


async def insert_loaded(session: AsyncSession, objects: Sequence[Base]) -> None:
    """Write new objects, then attach them to `session` as persistent (see the module)."""
    rows: dict[Table, list[dict[str, Any]]] = {}
    for item in objects:
        state = inspect(item)
        if not state.transient:
            raise ValueError(f"{item!r} is not a new object")
        mapper = state.mapper
        row = {}
        for attribute in mapper.column_attrs:
            column = cast("Column[Any]", attribute.columns[0])
            if attribute.key not in state.dict:
                setattr(item, attribute.key, _default(column))
            row[column.key] = state.dict[attribute.key]
        rows.setdefault(mapper.local_table, []).append(row)  # type: ignore[arg-type]
    connection = await session.connection()
    for table in Base.metadata.sorted_tables:
        if table in rows:
            await _statement(table).executemany(connection, rows[table])
    # Detached first, all of them: adding one cascades to the others it refers to, which
    # must then be attached as rows that exist, not as new ones to insert.
    for item in objects:
        make_transient_to_detached(item)
    for item in objects:
        session.add(item)
