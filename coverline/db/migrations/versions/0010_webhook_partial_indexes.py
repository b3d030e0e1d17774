"""the dispatcher's delivery indexes hold only the deliveries still to go

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 02:40:00.000000
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = 'webhook_deliveries'


def _where(predicate: str) -> dict[str, Any]:
    return {'sqlite_where': sa.text(predicate), 'postgresql_where': sa.text(predicate)}


PARTIAL = {
    'ix_webhook_deliveries_due': (['next_attempt_at'], "status = 'pending'"),
    'ix_webhook_deliveries_endpoint_due': (
        ['endpoint_id', 'next_attempt_at', 'id'],
        "status = 'pending'",
    ),
    'ix_webhook_deliveries_order': (
        ['endpoint_id', 'ordering_key', 'id'],
        "status IN ('pending', 'delivering')",
    ),
    'ix_webhook_deliveries_lease': (['lease_expires_at'], "status = 'delivering'"),
}
WHOLE = {
    'ix_webhook_deliveries_due': ['status', 'next_attempt_at'],
    'ix_webhook_deliveries_endpoint_due': ['endpoint_id', 'status', 'next_attempt_at', 'id'],
    'ix_webhook_deliveries_order': ['endpoint_id', 'ordering_key', 'id'],
    'ix_webhook_deliveries_lease': ['status', 'lease_expires_at'],
}


def upgrade() -> None:
    for name, (columns, predicate) in PARTIAL.items():
        op.drop_index(name, table_name=TABLE)
        op.create_index(name, TABLE, columns, unique=False, **_where(predicate))


def downgrade() -> None:
    for name, columns in WHOLE.items():
        op.drop_index(name, table_name=TABLE)
        op.create_index(name, TABLE, columns, unique=False)
