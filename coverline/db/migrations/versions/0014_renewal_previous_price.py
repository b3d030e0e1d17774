"""a paid renewal keeps the price of the period it followed

Confirming a renewal replaces the quote's price with the new period's; the price of the period
before was lost, and a refund then spread one period's price over every period. Each paid
renewal now keeps it (`previous_price_minor`), so that every paid period has its price.
Renewals paid before this revision have none: their period is priced as the quote's (refunds
fall back to it, as they did).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 15:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('renewals') as batch_op:
        batch_op.add_column(sa.Column('previous_price_minor', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('renewals') as batch_op:
        batch_op.drop_column('previous_price_minor')
