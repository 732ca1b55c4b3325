"""What the live bot reported of a contract's listing, and the venue's refusals on a withdrawn
contract: both kept across restarts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 19:00:00

``listing_reports``: per contract, the withdrawal (and why) and the scheduled settlement the
catalogue keeper last reported (one event, one alert): a restart (a crash loop, a redeploy)
reports only what changed since, not the same critical alert at every start.

``venue_refusals``: per contract, the restriction under which the venue refused an order on it
while withdrawn: a restart sends no further order on it while that restriction holds (each
restart sent one more, refused).

A database upgraded from 0004 has neither: the first start after the upgrade reports the
venue's listing once more, as every start did before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "listing_reports",
        sa.Column("symbol", sa.String(length=128), nullable=False),
        sa.Column("withdrawn", sa.Text(), nullable=True),
        sa.Column("settles_ms", sa.BigInteger(), nullable=True),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("symbol"),
    )
    op.create_table(
        "venue_refusals",
        sa.Column("symbol", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("symbol"),
    )


def downgrade() -> None:
    op.drop_table("venue_refusals")
    op.drop_table("listing_reports")
