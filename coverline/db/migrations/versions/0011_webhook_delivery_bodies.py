"""webhook delivery bodies apart from the delivery rows

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 03:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'webhook_delivery_bodies',
        sa.Column('delivery_public_id', sa.String(length=40), nullable=False),
        sa.Column('body', sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ['delivery_public_id'],
            ['webhook_deliveries.public_id'],
            name=op.f('fk_webhook_delivery_bodies_delivery_public_id_webhook_deliveries'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('delivery_public_id', name=op.f('pk_webhook_delivery_bodies')),
    )
    op.execute(
        'INSERT INTO webhook_delivery_bodies (delivery_public_id, body) '
        'SELECT public_id, body FROM webhook_deliveries WHERE body IS NOT NULL'
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_column('body')


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('body', sa.LargeBinary(), nullable=True))
    op.execute(
        'UPDATE webhook_deliveries SET body = (SELECT b.body FROM webhook_delivery_bodies AS b '
        'WHERE b.delivery_public_id = webhook_deliveries.public_id)'
    )
    op.drop_table('webhook_delivery_bodies')
