"""The heartbeat: the last job the bot completed, and when (one row, replaced by every job).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 08:00:00

A database upgraded from 0002 has no heartbeat until the bot's first job after the upgrade:
``/healthz`` and the dashboard judge it on the last tick alone until then, and say so.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "heartbeat",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_heartbeat_single_row"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("heartbeat")
