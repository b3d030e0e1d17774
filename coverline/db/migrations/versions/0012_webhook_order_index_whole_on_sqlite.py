"""the order index of webhook deliveries is whole on SQLite

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 07:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = 'webhook_deliveries'
NAME = 'ix_webhook_deliveries_order'
COLUMNS = ['endpoint_id', 'ordering_key', 'id']
LIVE = "status IN ('pending', 'delivering')"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == 'sqlite'


def upgrade() -> None:
    # PostgreSQL keeps the partial index of 0010.
    if _sqlite():
        op.drop_index(NAME, table_name=TABLE)
        op.create_index(NAME, TABLE, COLUMNS, unique=False)


def downgrade() -> None:
    if _sqlite():
        op.drop_index(NAME, table_name=TABLE)
        op.create_index(NAME, TABLE, COLUMNS, unique=False, sqlite_where=sa.text(LIVE))
