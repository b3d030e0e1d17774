"""deliveries still to go to a deleted endpoint are failed

Before, deleting an endpoint failed its pending deliveries but not those a worker held: they
came back pending for an endpoint no worker claims for, and stayed so. The deletion now fails
them too; this fails those left from before.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 19:45:00.000000
"""

from collections.abc import Sequence

from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE webhook_deliveries SET status = 'failed',"
        " last_error = 'The endpoint was deleted.', completed_at = CURRENT_TIMESTAMP,"
        " leased_by = NULL, lease_expires_at = NULL"
        " WHERE status IN ('pending', 'delivering') AND endpoint_id IN"
        " (SELECT id FROM webhook_endpoints WHERE deleted_at IS NOT NULL)"
    )


def downgrade() -> None:
    # What was failed stays failed: the deliveries had nowhere to go.
    pass
