"""Risk memory remembers whether a halt closes positions (``bot halt`` vs ``--flatten``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 16:00:00

Existing halted states came from risk limits, which always closed positions: they keep that
meaning (server default true).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN works on SQLite without batch mode (and so in offline --sql mode too).
    op.add_column(
        "risk_memory", sa.Column("flatten", sa.Boolean(), nullable=False, server_default=sa.true())
    )


def downgrade() -> None:
    with op.batch_alter_table("risk_memory", schema=None) as batch_op:
        batch_op.drop_column("flatten")
