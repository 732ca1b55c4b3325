"""Alert delivery per destination: which of ``runtime.alert_urls`` each alert is owed to, and
when it reached each.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 15:00:00

With two destinations (Telegram and e-mail), one that failed made the alert count as not
delivered at all: held and sent again to every destination at each retry (the working one
received the same halt every few minutes, forever, and again after each restart), and the
failing one's rest held every new alert back from the working one. Each destination now keeps
its own delivery, rest and held alerts (``bot.alerts.Notifier``), and the rows here say what
reached whom, so that a restart sends a held alert only where it did not arrive, and ``bot
status`` names the destination that fails.

``alerts.delivered`` keeps its meaning for the dashboard: the alert reached every destination
it was owed to. The alerts recorded before this revision have no row: they are judged as
before (a critical one not delivered, newer than the newest delivery and not a repeat, is
owed to every destination).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=32), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
        ),
        sa.PrimaryKeyConstraint("alert_id", "destination"),
    )
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_deliveries_delivered_ms"), ["delivered_ms"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_deliveries_delivered_ms"))
    op.drop_table("alert_deliveries")
