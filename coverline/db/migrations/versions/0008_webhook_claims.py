"""webhook claims walk one index in order

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 19:30:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_endpoint_due')
        batch_op.create_index(
            'ix_webhook_deliveries_endpoint_due',
            ['endpoint_id', 'status', 'next_attempt_at', 'id'],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_endpoint_due')
        batch_op.create_index(
            'ix_webhook_deliveries_endpoint_due',
            ['endpoint_id', 'status', 'next_attempt_at'],
            unique=False,
        )
