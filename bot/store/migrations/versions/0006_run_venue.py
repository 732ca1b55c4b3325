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
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN works on SQLite without batch mode (and so in offline --sql mode too).
    op.add_column("runs", sa.Column("venue", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("venue")
