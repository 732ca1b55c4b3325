"""Alembic migrations: they build exactly the models' schema, and a stale database is refused;
an upgrade killed part-way leaves the database as it was."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, create_engine, inspect, text
from sqlmodel import SQLModel

import bot
import bot.store.tables
from bot.store.migrate import (
    COMMAND_REVISIONS,
    MIGRATIONS_DIR,
    UPGRADE_COMMAND,
    SchemaOutOfDate,
    alembic_config,
    current_revision,
    ensure_current,
    head_revision,
    safe_url,
    upgrade,
)
from bot.store.sql import SqlStore
from tests.store.conftest import fresh_database

ROOT = Path(__file__).resolve().parents[2]
MODELS = SQLModel.metadata
_ = bot.store.tables  # registers the tables on SQLModel.metadata


def schema_diff(url: str, metadata: MetaData) -> list[object]:
    """What ``alembic check`` compares: the migrated database against ``metadata``."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_creates_every_table_and_reaches_head(store_url: str) -> None:
    upgrade(store_url)
    engine = create_engine(store_url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert tables == set(MODELS.tables) | {"alembic_version"}
    assert current_revision(store_url) == head_revision()
    ensure_current(store_url)  # does not raise


def test_models_and_migrations_agree(store_url: str) -> None:
    """Fails when a table in bot/store/tables.py changes without a new migration."""
    upgrade(store_url)
    assert schema_diff(store_url, MODELS) == []


def test_the_comparison_sees_a_divergence(store_url: str) -> None:
    upgrade(store_url)
    changed = MetaData()
    for table in MODELS.tables.values():
        table.to_metadata(changed)
    changed.tables["orders"].append_column(Column("venue", String(16), nullable=True))
    diff = schema_diff(store_url, changed)
    # ("add_column", schema, table, Column)
    assert [(d[0], d[2], d[3].name) for d in diff if isinstance(d, tuple)] == [
        ("add_column", "orders", "venue")
    ]
    assert len(diff) == 1


def test_upgrade_twice_is_harmless(store_url: str) -> None:
    upgrade(store_url)
    upgrade(store_url)
    assert current_revision(store_url) == head_revision()


def test_downgrade_to_base_then_refused_then_upgrade_again(store_url: str) -> None:
    upgrade(store_url)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config(store_url)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutOfDate, match="has no schema") as info:
        ensure_current(store_url)
    assert UPGRADE_COMMAND in str(info.value)
    upgrade(store_url)
    ensure_current(store_url)


def test_empty_database_is_refused_with_the_command(store_url: str) -> None:
    engine = create_engine(store_url)
    try:
        with engine.connect():  # creates the SQLite file; PostgreSQL's database is already empty
            pass
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutOfDate) as info:
        ensure_current(store_url)
    message = str(info.value)
    assert "has no schema" in message
    assert f"migrate it with: {UPGRADE_COMMAND}" in message
    assert "bot db upgrade --config FILE" in message


def test_store_refuses_to_open_an_unmigrated_database(store_url: str) -> None:
    with pytest.raises(SchemaOutOfDate, match="bot db upgrade --config FILE"):
        SqlStore.open(store_url)


def test_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bot.db"
    with pytest.raises(SchemaOutOfDate, match="does not exist") as info:
        ensure_current(f"sqlite:///{path}")
    assert str(path) in str(info.value)
    assert UPGRADE_COMMAND in str(info.value)
    assert not path.exists()
    upgrade(f"sqlite:///{path}")  # creates the directory and the file
    ensure_current(f"sqlite:///{path}")


def test_database_migrated_by_a_newer_bot_is_refused(store_url: str) -> None:
    upgrade(store_url)
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutOfDate, match=r"unknown to this bot.*upgrade the bot"):
        ensure_current(store_url)
    # ``bot db upgrade`` says the same, not Alembic's "Can't locate revision" traceback, and
    # leaves the database as it was.
    with pytest.raises(SchemaOutOfDate, match=r"9999_future, unknown to this bot.*upgrade the bot"):
        upgrade(store_url)
    assert current_revision(store_url) == "9999_future"


def test_messages_mask_the_password() -> None:
    masked = safe_url("postgresql+psycopg://bot:s3cret@db.internal:5432/bot")
    assert "s3cret" not in masked
    assert "db.internal:5432/bot" in masked


@pytest.mark.parametrize(
    ("url", "decimal_ddl"),
    [
        ("postgresql+psycopg://bot@localhost/bot", "NUMERIC(38, 18)"),
        ("sqlite:///unused.db", "VARCHAR(64)"),
    ],
    ids=["postgres", "sqlite"],
)
def test_offline_sql_uses_the_exact_decimal_column(url: str, decimal_ddl: str) -> None:
    """``--sql`` mode renders the DDL without a server: decimals are never floats."""
    cfg = alembic_config(url)
    cfg.output_buffer = io.StringIO()
    command.upgrade(cfg, "head", sql=True)
    ddl = cfg.output_buffer.getvalue()
    assert f"price {decimal_ddl}" in ddl
    assert "CREATE TABLE orders" in ddl


def test_migrations_ship_inside_the_package() -> None:
    package = Path(bot.__file__).resolve().parent
    assert MIGRATIONS_DIR.is_relative_to(package)
    for name in ("__init__.py", "env.py", "script.py.mako", "versions/__init__.py"):
        assert (MIGRATIONS_DIR / name).is_file(), name
    assert list((MIGRATIONS_DIR / "versions").glob(f"{head_revision()}_*.py"))


def test_upgrade_from_0001_keeps_history(tmp_path: Path) -> None:
    """A user's database at the first schema upgrades in place; nothing is lost."""
    import sqlalchemy as sa

    from bot.store.migrate import upgrade
    from bot.store.sql import SqlStore

    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO risk_memory (id, state, state_reason, peak_equity, day_start_ms, "
                "day_start_equity, sticky) "
                "VALUES (1, 'halted', 'drawdown', '12000.5', 0, '11000', 1)"
            )
        )
        conn.execute(sa.text("INSERT INTO sequences (name, value) VALUES ('x', 41)"))
    engine.dispose()
    upgrade(url)
    store = SqlStore.open(url)
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.peak_equity == Decimal("12000.5")
    assert memory.flatten is True  # halts before 0002 came from limits, which flatten
    assert store.next_sequence("x") == 42
    store.close()


def test_upgrade_from_0002_adds_the_heartbeat(store_url: str) -> None:
    """A database of the bot before the heartbeat: refused until ``bot db upgrade``, then kept
    as it was, with no heartbeat until the bot's first job."""
    import sqlalchemy as sa

    from bot.ports.store import Heartbeat

    upgrade(store_url, "0002")
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO risk_memory (id, state, state_reason, peak_equity, day_start_ms, "
                    "day_start_equity, sticky, flatten) "
                    "VALUES (1, 'halted', 'bot halt', '12000.5', 0, '11000', true, false)"
                )
            )
    finally:
        engine.dispose()
    with pytest.raises(
        SchemaOutOfDate, match=rf"at revision 0002, older than this bot's {head_revision()}"
    ):
        SqlStore.open(store_url)
    upgrade(store_url)
    assert current_revision(store_url) == head_revision()
    store = SqlStore.open(store_url)
    try:
        memory = store.load_risk_memory()
        assert memory is not None
        assert (memory.peak_equity, memory.flatten) == (Decimal("12000.5"), False)
        assert store.last_heartbeat() is None
        store.record_heartbeat(Heartbeat(ts_ms=1_748_822_460_000, job="guard"))
        assert store.last_heartbeat() == Heartbeat(ts_ms=1_748_822_460_000, job="guard")
    finally:
        store.close()


def test_upgrade_from_0004_adds_the_listing_reports_and_the_refusals(store_url: str) -> None:
    """A database of the bot before the listing reports and the venue refusals were kept:
    refused until ``bot db upgrade``, then kept as it was, with neither recorded (the first
    start after the upgrade reports the venue's listing once more)."""
    import sqlalchemy as sa

    from bot.domain.market import VenueRestriction
    from bot.ports.store import ListingReport

    upgrade(store_url, "0004")
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO sequences (name, value) VALUES ('x', 41)"))
    finally:
        engine.dispose()
    with pytest.raises(
        SchemaOutOfDate, match=rf"at revision 0004, older than this bot's {head_revision()}"
    ):
        SqlStore.open(store_url)
    upgrade(store_url)
    assert current_revision(store_url) == head_revision()
    store = SqlStore.open(store_url)
    try:
        assert store.next_sequence("x") == 42
        assert store.listing_reports() == {}
        assert store.venue_refusals() == {}
        eth = "ETH/USDT:USDT"
        report = ListingReport(eth, withdrawn="status SETTLING", settles_ms=1_798_761_600_000)
        store.record_listing_report(report, 1)
        refusal = VenueRestriction(f"{eth}: withdrawn by the venue (status SETTLING)")
        store.record_venue_refusal(eth, refusal, 1)
        assert store.listing_reports() == {eth: report}
        assert store.venue_refusals() == {eth: refusal}
    finally:
        store.close()


def test_upgrade_from_0005_keeps_the_runs_without_their_venue(store_url: str) -> None:
    """Runs recorded before their venue was: kept, with no venue (a live start on them is not
    refused for the venue: ``bootstrap.check_run_kind``); the runs after the upgrade record it."""
    import sqlalchemy as sa

    from bot.store import views

    upgrade(store_url, "0005")
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO runs (started_ms, mode, config_path, policy_name, version) "
                    "VALUES (1, 'live', 'my.toml', 'vol_target', '0.1')"
                )
            )
    finally:
        engine.dispose()
    with pytest.raises(SchemaOutOfDate, match=r"at revision 0005, older than this bot's"):
        SqlStore.open(store_url)
    upgrade(store_url)
    store = SqlStore.open(store_url)
    try:
        assert views.latest_run(store) == views.RunRecord(1, "live", "my.toml", None)
        store.open_run("live", "my.toml", "vol_target", 2, "binanceusdm (demo)")
        assert views.latest_run(store) == views.RunRecord(
            2, "live", "my.toml", "binanceusdm (demo)"
        )
    finally:
        store.close()


# The child of the test below: ``upgrade`` with the process killed (SIGKILL: no handler, no
# cleanup, as the OOM killer or a power cut) right after migration 0006's ALTER TABLE, before
# the revision is stamped. Deterministic: the kill is in the call, not timed from outside.
KILLED_AFTER_ADD_COLUMN = """
import os, signal, sys
from alembic.operations import Operations
from bot.store.migrate import upgrade

add_column = Operations.add_column

def add_column_then_die(self, *args, **kwargs):
    add_column(self, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

Operations.add_column = add_column_then_die
upgrade(sys.argv[1])
"""


def _runs_columns(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return {c["name"] for c in inspect(engine).get_columns("runs")}
    finally:
        engine.dispose()


def test_an_upgrade_killed_midway_leaves_the_database_at_its_revision(store_url: str) -> None:
    """Every migration of an upgrade and its revision stamp are one transaction, on SQLite too
    (whose driver emitted no BEGIN before DDL: the ALTER committed alone, the revision stayed
    0005, and every upgrade after failed on "duplicate column name: venue")."""
    upgrade(store_url, "0005")
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO runs (started_ms, mode, config_path, policy_name, version) "
                    "VALUES (1, 'live', 'my.toml', 'vol_target', '0.1')"
                )
            )
    finally:
        engine.dispose()
    child = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_ADD_COLUMN, store_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert current_revision(store_url) == "0005"
    assert "venue" not in _runs_columns(store_url)  # the ALTER was rolled back with the rest
    upgrade(store_url)  # and the next upgrade runs from 0005
    assert current_revision(store_url) == head_revision()
    store = SqlStore.open(store_url)
    try:
        assert store.database_id() is not None
    finally:
        store.close()
    assert schema_diff(store_url, MODELS) == []


def test_a_database_left_half_migrated_to_0006_is_upgraded(store_url: str) -> None:
    """A database an earlier bot's ``bot db upgrade`` left with the column of 0006 and the
    revision 0005 (killed between the two, before upgrades were one transaction on SQLite)
    upgrades, keeping what it holds."""
    upgrade(store_url, "0005")
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE runs ADD COLUMN venue TEXT"))
            conn.execute(
                text(
                    "INSERT INTO runs (started_ms, mode, config_path, policy_name, version) "
                    "VALUES (1, 'live', 'my.toml', 'vol_target', '0.1')"
                )
            )
    finally:
        engine.dispose()
    upgrade(store_url)
    assert current_revision(store_url) == head_revision()
    assert schema_diff(store_url, MODELS) == []
    from bot.store import views

    store = SqlStore.open(store_url)
    try:
        assert views.latest_run(store) == views.RunRecord(1, "live", "my.toml", None)
    finally:
        store.close()


def _commands_table(url: str) -> tuple[object, ...]:
    engine = create_engine(url)
    try:
        found = inspect(engine)
        columns = [
            (c["name"], str(c["type"]), c["nullable"], c.get("default"))
            for c in found.get_columns("commands")
        ]
        indexes = sorted(
            (i["name"] or "", tuple(map(str, i["column_names"])), bool(i["unique"]))
            for i in found.get_indexes("commands")
        )
        return (columns, indexes, found.get_pk_constraint("commands")["constrained_columns"])
    finally:
        engine.dispose()


def test_the_commands_table_is_the_same_at_every_revision_that_takes_commands(
    backend: str, tmp_path: Path
) -> None:
    """``bot halt`` and ``bot resume`` post to a database at an older revision of
    ``COMMAND_REVISIONS`` (a bot of that version may still run on it during an upgrade): the
    table they write must be the one those bots read. A migration that changes it fails here;
    its revision's bots are then checked before the revision before it is kept in the set."""
    assert head_revision() not in COMMAND_REVISIONS
    with fresh_database(backend, tmp_path) as url:
        upgrade(url)
        expected = _commands_table(url)
    for revision in sorted(COMMAND_REVISIONS):
        with fresh_database(backend, tmp_path / revision) as url:
            upgrade(url, revision)
            assert _commands_table(url) == expected, revision


def test_upgrade_from_0006_keeps_every_snapshot_a_tick(store_url: str) -> None:
    """Equity and positions recorded before a guard recorded its readings: every equity
    snapshot is a decision tick's (the last tick is still found), the positions have no mark
    (the surfaces show the last decision's then)."""
    import sqlalchemy as sa

    from bot.store import views

    upgrade(store_url, "0006")
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO equity_snapshots (ts_ms, wallet, unrealized_pnl, equity, state) "
                    "VALUES (1000, '100', '0', '100', 'active')"
                )
            )
            conn.execute(sa.text("INSERT INTO position_snapshots (id, ts_ms) VALUES (1, 1000)"))
            conn.execute(
                sa.text(
                    "INSERT INTO positions (snapshot_id, symbol, qty, entry_price, leverage, "
                    "margin_mode, isolated_margin) VALUES (1, 'BTC/USDT:USDT', '0.1', '100', '2', "
                    "'isolated', '5')"
                )
            )
    finally:
        engine.dispose()
    upgrade(store_url)
    store = SqlStore.open(store_url)
    try:
        tick = store.latest_equity(decision=True)
        assert tick is not None
        assert (tick.ts_ms, tick.decision) == (1000, True)
        recorded = views.recorded_positions(store)
        assert recorded is not None
        assert (recorded.ts_ms, list(recorded.positions), recorded.marks) == (
            1000,
            ["BTC/USDT:USDT"],
            {},
        )
    finally:
        store.close()


def test_upgrade_from_0007_keeps_the_alerts_judged_as_before(store_url: str) -> None:
    """Alerts recorded before deliveries were kept per destination: none is owed to a
    destination by a row, and a critical one the old bot failed to deliver (newer than its last
    delivery, not a repeat) is still owed to every destination, as ``bot status`` said then."""
    import sqlalchemy as sa

    from bot.store import views

    upgrade(store_url, "0007")
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            for ts, key, severity, delivered in (
                (1000, "state:halted@a", "critical", True),
                (2000, "state:halted@b", "critical", False),
                (3000, "tick_failed:tick", "warning", False),
            ):
                conn.execute(
                    sa.text(
                        "INSERT INTO alerts (ts_ms, key, severity, message, delivered) "
                        "VALUES (:ts, :key, :severity, 'm', :delivered)"
                    ),
                    {"ts": ts, "key": key, "severity": severity, "delivered": delivered},
                )
    finally:
        engine.dispose()
    upgrade(store_url)
    store = SqlStore.open(store_url)
    try:
        assert [(a.key, a.owed, a.delivered_to) for a in views.recent_alerts(store, 5)] == [
            ("tick_failed:tick", frozenset(), frozenset()),
            ("state:halted@b", frozenset(), frozenset()),
            ("state:halted@a", frozenset(), frozenset()),
        ]
        [owed] = views.owed_critical(store, ["d1", "d2"], dedup_ms=3_600_000)
        assert (owed.key, owed.owed_to, owed.legacy) == (
            "state:halted@b",
            frozenset({"d1", "d2"}),
            True,
        )
        # Once this version delivers an alert anywhere, what the old bot missed is history.
        new = store.record_alert(4000, "margin_ratio", "critical", "m", destinations=["d1"])
        store.mark_alert_delivered(new, "d1", ts_ms=4000)
        assert views.owed_critical(store, ["d1", "d2"], dedup_ms=3_600_000) == []
    finally:
        store.close()
