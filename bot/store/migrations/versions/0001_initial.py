"""Initial schema: every table of bot/store/tables.py.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 15:24:19.127459
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import bot.store.types

# Autogenerate renders SQLModel strings as sqlmodel.sql.sqltypes.AutoString() and the store's
# custom types by module path (bot.store.types.ExactDecimal()): both imports above are needed.
_ = (sqlmodel, bot.store.types)

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_key"), ["key"], unique=False)

    op.create_table(
        "commands",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("consumed", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_commands_consumed"), ["consumed"], unique=False)

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tick_id", sa.String(length=128), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("symbol", sa.String(length=128), nullable=False),
        sa.Column("direction", sa.Integer(), nullable=False),
        sa.Column("target_leverage", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("target_qty", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("stop_loss", bot.store.types.ExactDecimal(), nullable=True),
        sa.Column("take_profit", bot.store.types.ExactDecimal(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("allow_increase", sa.Boolean(), nullable=False),
        sa.Column("current_qty", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("current_leverage", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("mark_price", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("volatility", bot.store.types.ExactDecimal(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_decisions_tick_id"), ["tick_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_decisions_ts_ms"), ["ts_ms"], unique=False)

    op.create_table(
        "equity_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("wallet", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("unrealized_pnl", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("equity", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_equity_snapshots_ts_ms"), ["ts_ms"], unique=False)

    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=128), nullable=False),
        sa.Column("side", sa.String(length=32), nullable=False),
        sa.Column("qty", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("price", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("fee", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=True),
        sa.Column("realized_pnl", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("liquidation", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fills_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_fills_ts_ms"), ["ts_ms"], unique=False)

    op.create_table(
        "orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("symbol", sa.String(length=128), nullable=False),
        sa.Column("side", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("amount", bot.store.types.ExactDecimal(), nullable=True),
        sa.Column("reduce_only", sa.Boolean(), nullable=False),
        sa.Column("trigger_price", bot.store.types.ExactDecimal(), nullable=True),
        sa.Column("price", bot.store.types.ExactDecimal(), nullable=True),
        sa.Column("close_position", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("exchange_id", sa.String(length=128), nullable=True),
        sa.Column("filled", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("average_price", bot.store.types.ExactDecimal(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_updated_ms"), ["updated_ms"], unique=False)

    op.create_table(
        "paper_state",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "position_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("position_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_position_snapshots_ts_ms"), ["ts_ms"], unique=False)

    op.create_table(
        "risk_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ts_ms", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("risk_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_events_ts_ms"), ["ts_ms"], unique=False)

    op.create_table(
        "risk_memory",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("state_reason", sa.Text(), nullable=False),
        sa.Column("peak_equity", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("day_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("day_start_equity", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("sticky", sa.Boolean(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_risk_memory_single_row"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.String(length=32), nullable=False),
        sa.Column("config_path", sa.Text(), nullable=False),
        sa.Column("policy_name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "sequences",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "positions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(length=128), nullable=False),
        sa.Column("qty", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("entry_price", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("leverage", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("margin_mode", sa.String(length=32), nullable=False),
        sa.Column("isolated_margin", bot.store.types.ExactDecimal(), nullable=False),
        sa.Column("liquidation_price", bot.store.types.ExactDecimal(), nullable=True),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["position_snapshots.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_positions_snapshot_id"), ["snapshot_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("positions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_positions_snapshot_id"))

    op.drop_table("positions")
    op.drop_table("sequences")
    op.drop_table("runs")
    op.drop_table("risk_memory")
    with op.batch_alter_table("risk_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_risk_events_ts_ms"))

    op.drop_table("risk_events")
    with op.batch_alter_table("position_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_position_snapshots_ts_ms"))

    op.drop_table("position_snapshots")
    op.drop_table("paper_state")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_updated_ms"))
        batch_op.drop_index(batch_op.f("ix_orders_status"))

    op.drop_table("orders")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fills_ts_ms"))
        batch_op.drop_index(batch_op.f("ix_fills_client_id"))

    op.drop_table("fills")
    with op.batch_alter_table("equity_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_equity_snapshots_ts_ms"))

    op.drop_table("equity_snapshots")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_ts_ms"))
        batch_op.drop_index(batch_op.f("ix_decisions_tick_id"))

    op.drop_table("decisions")
    with op.batch_alter_table("commands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_commands_consumed"))

    op.drop_table("commands")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_key"))

    op.drop_table("alerts")
