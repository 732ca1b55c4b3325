"""The venue account each live run traded: which exchange, demo or real, through which URL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 08:00:00

A live start refuses a state database whose last live run traded another venue account (the
demo account, another exchange, a test server at ``api_url``): the risk memory it kept (the
equity peak, the trading state, the day's start) is that account's, and measured against
another wallet it halts on a drawdown that never happened and closes every position
(``bootstrap.check_run_kind``). NULL for paper runs, and for the runs recorded before this
revision: a database upgraded from 0005 tells nothing of the venue of its past runs, so its
next live start is not refused for it (the start records its venue from then on).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if not context.is_offline_mode() and _has_venue():
        # A SQLite database an earlier version's `bot db upgrade` left half-way, killed after
        # this ALTER: before ``migrate.migration_engine`` the ALTER committed on its own, the
        # revision stayed 0005, and every upgrade after failed on "duplicate column name:
        # venue". The column is the one this migration adds: taken as it is.
        return
    # ADD COLUMN works on SQLite without batch mode (and so in offline --sql mode too).
    op.add_column("runs", sa.Column("venue", sa.Text(), nullable=True))


def _has_venue() -> bool:
    return any(c["name"] == "venue" for c in sa.inspect(op.get_bind()).get_columns("runs"))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("venue")
