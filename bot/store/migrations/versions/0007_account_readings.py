"""Every job that reads the account records what it read, not only the decision ticks.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 14:00:00

The guard records the positions and the equity it read (when they changed, or every quarter of
an hour), so that the dashboard, ``/metrics`` and ``bot status`` no longer show the positions
of the last decision tick beside the orders of the guard since (a position its stop closed
shown open, "no stop", the loss not counted). ``equity_snapshots.decision`` tells the two
apart: "last tick" is the newest decision's (server default true: every snapshot recorded
before this revision is a tick's). ``positions.mark_price`` keeps the mark each position was
valued at, so a live account's mark is as fresh as its positions (NULL before this revision:
the last decision's mark is shown then, with its time).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.store.types import ExactDecimal

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN works on SQLite without batch mode (and so in offline --sql mode too).
    op.add_column(
        "equity_snapshots",
        sa.Column("decision", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.add_column("positions", sa.Column("mark_price", ExactDecimal(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.drop_column("mark_price")
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.drop_column("decision")
