"""The operating commands through the CLI: run --once, status, history, halt, resume, db."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from bot.cli.app import app
from bot.store import migrate
from bot.store.instance_lock import InstanceLock
from tests.runtime.conftest import ROOT, write_config
from tests.store.conftest import POSTGRES_URL, fresh_database

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_status_history_halt_resume(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path, contracts=2))
    invoke("run", "--config", cfg, "--once", "--replay", str(ROOT / "data" / "sample"))
    status = json.loads(invoke("status", "--config", cfg, "--json"))
    assert status["state"] == "active"
    assert [c["symbol"] for c in status["contracts"]] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    btc = status["contracts"][0]
    assert btc["position"] != "0"
    assert btc["stop_loss"] is not None
    assert btc["reason"].startswith("BTC: vol")
    assert float(btc["liquidation_distance_vol_units"]) > 0
    assert "decisions" in invoke("history", "--config", cfg, "--limit", "5")
    assert "halt posted" in invoke("halt", "--config", cfg, "--reason", "maintenance")
    invoke("run", "--config", cfg, "--once", "--replay", str(ROOT / "data" / "sample"))
    status = json.loads(invoke("status", "--config", cfg, "--json"))
    assert status["state"] == "halted"
    assert status["state_reason"] == "maintenance"
    assert status["contracts"][0]["position"] != "0"  # halt without --flatten holds positions
    invoke("resume", "--config", cfg)
    invoke("run", "--config", cfg, "--once", "--replay", str(ROOT / "data" / "sample"))
    assert json.loads(invoke("status", "--config", cfg, "--json"))["state"] == "active"


def test_an_old_database_is_refused_until_upgraded(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    migrate.upgrade(f"sqlite:///{tmp_path / 'state.db'}", "0001")
    result = runner.invoke(app, ["status", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "bot db upgrade --config" in result.output
    # (no bot version ran at 0001: nothing there would read a halt)
    result = runner.invoke(app, ["halt", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "halt not posted" in result.output
    assert "0001 ->" in invoke("db", "upgrade", "--config", str(cfg))
    invoke("status", "--config", str(cfg))


def test_a_halt_reaches_an_older_bot_still_running_during_an_upgrade(tmp_path: Path) -> None:
    """This version installed while a bot of the version before still runs on its database
    (revision 0005, which only ``bot db upgrade`` migrates, once no bot runs there): the halt
    is posted as that bot reads it (``migrate.COMMAND_REVISIONS``), and what is refused meanwhile
    says the order that works, naming the running bot; after the upgrade the halt is kept for
    this version's start. Before, the halt and the status were refused with "migrate it with:
    bot db upgrade", which the running bot refused in turn."""
    cfg = str(write_config(tmp_path, contracts=1))
    url = f"sqlite:///{tmp_path / 'state.db'}"
    migrate.upgrade(url, "0005")
    older_bot = InstanceLock.acquire(url)  # the lock the older bot holds while it runs
    try:
        posted = " ".join(invoke("halt", "--config", cfg, "--flatten", "--reason", "up").split())
        assert "halt posted (command 1)" in posted
        assert "at revision 0005" in posted
        for refused in (["status", "--config", cfg], ["db", "upgrade", "--config", cfg]):
            result = runner.invoke(app, refused)
            assert result.exit_code == 2, result.output
            said = " ".join(result.output.split())
            assert f"(process {os.getpid()})" in said
            assert "stop that bot" in said.lower()
            assert "`bot halt` (--flatten) and `bot resume` reach" in said
        assert migrate.current_revision(url) == "0005"
    finally:
        older_bot.release()
    # What a bot at 0005 reads and applies at its next job (runner.apply_commands since 77e1b88).
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, kind, args, consumed FROM commands")).all()
    finally:
        engine.dispose()
    assert [(r[0], r[1], json.loads(r[2]), bool(r[3])) for r in rows] == [
        (1, "halt", {"flatten": True, "reason": "up"}, False)
    ]
    assert "0005 ->" in invoke("db", "upgrade", "--config", cfg)
    invoke("run", "--config", cfg, "--once", "--replay", str(ROOT / "data" / "sample"))
    status = json.loads(invoke("status", "--config", cfg, "--json"))
    assert (status["state"], status["state_reason"], status["pending_commands"]) == (
        "halted",
        "up",
        [],
    )


def test_live_without_keys_says_which_variables(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BOT_API_KEY", raising=False)
    monkeypatch.delenv("BOT_API_SECRET", raising=False)
    result = runner.invoke(app, ["run", "--config", str(write_config(tmp_path)), "--live"])
    assert result.exit_code == 2
    assert "BOT_API_KEY and BOT_API_SECRET" in result.output


@pytest.mark.parametrize(
    ("key", "secret", "named"),
    [
        ("   ", "s3cret", "set BOT_API_KEY"),  # blank passed the check before
        ("k3y\n", "s3cret", "BOT_API_KEY holds a space, a line break"),
        ("k3y", " s3cret", "BOT_API_SECRET holds a space"),
    ],
)
def test_live_with_a_blank_or_pasted_key_says_which_variable(
    tmp_path: Path, monkeypatch, key: str, secret: str, named: str
) -> None:
    """A key of spaces went on to the venue (and made the state database), and a key pasted
    with its line break failed there with an authentication error that does not say why."""
    monkeypatch.setenv("BOT_API_KEY", key)
    monkeypatch.setenv("BOT_API_SECRET", secret)
    result = runner.invoke(app, ["run", "--config", str(write_config(tmp_path)), "--live"])
    assert result.exit_code == 2
    assert named in result.output
    assert "s3cret" not in result.output
    assert "k3y" not in result.output
    assert not list(tmp_path.glob("*.db"))


def test_stress_the_running_account(tmp_path: Path) -> None:
    cfg = str(write_config(tmp_path, contracts=2))
    invoke("run", "--config", cfg, "--once", "--replay", str(ROOT / "data" / "sample"))
    report = json.loads(invoke("stress", "--config", cfg, "--from-account", "--json"))
    held = [p["contract"] for p in report["portfolio"]["positions"]]
    assert held == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert all(p["stop_loss"] for p in report["portfolio"]["positions"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--replay", "DATA", "--speed", "0"], "--speed 0.0: the replay speed must be"),
        (["--replay", "DATA", "--speed", "nan"], "--speed nan: the replay speed must be"),
        (["--replay", "DATA", "--speed", "inf"], "--speed inf: the replay speed must be"),
        (["--replay", "DATA", "--ticks", "0"], "--ticks 0: the number of ticks to run"),
        (["--speed", "10", "--once"], "--speed 10.0 replays recorded data faster"),
    ],
    ids=["speed-0", "speed-nan", "speed-inf", "ticks-0", "speed-without-replay"],
)
def test_run_options_that_cannot_work_are_one_clear_line(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    cfg = str(write_config(tmp_path, contracts=1))
    args = [str(ROOT / "data" / "sample") if a == "DATA" else a for a in args]
    result = runner.invoke(app, ["run", "--config", cfg, *args])
    assert result.exit_code == 2, result.output
    assert expected in " ".join(result.output.split())
    assert not (tmp_path / "state.db").exists()  # refused before anything was opened


def test_status_of_a_replay_does_not_judge_its_replayed_heartbeat_on_the_wall_clock(
    tmp_path: Path,
) -> None:
    # A replay stamps its jobs with replayed time (June 2025 for the sample data): judged on
    # the wall clock, `bot status` said "bot not running" of a replay running well, with an
    # age of months.
    cfg = str(write_config(tmp_path, contracts=1))
    invoke("run", "--config", cfg, "--once", "--replay", str(ROOT / "data" / "sample"))
    status = json.loads(invoke("status", "--config", cfg, "--json"))
    assert status["bot_down"] is None
    assert status["last_job_age_s"] is None
    assert status["last_job"] == "tick"
    assert status["last_job_at"].startswith("2025-06-")  # replayed time, shown as such
    assert status["replay"] is True
    text = invoke("status", "--config", cfg)
    assert "BOT NOT RUNNING?" not in text
    assert "replayed time" in " ".join(text.split())


def test_a_dashboard_on_the_wall_clock_does_not_judge_a_replays_times(tmp_path: Path) -> None:
    """`bot dashboard` (wall clock) over a replay's state database: its jobs are stamped in
    replayed time (June 2025), so /healthz answered 503 "no job completed for ... s; the bot
    process may be down" and /metrics exported ages of months. No age and no verdict now; the
    times themselves are still shown."""
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from bot.bootstrap import open_store
    from bot.clock import LiveClock
    from bot.config.loader import load_config
    from bot.dashboard.server import account_app, metrics_app

    cfg = write_config(tmp_path, contracts=1)
    invoke("run", "--config", str(cfg), "--once", "--replay", str(ROOT / "data" / "sample"))
    config = load_config(cfg)
    store = open_store(config)
    try:
        served = TestClient(
            metrics_app(config, store, LiveClock(), CollectorRegistry()),
            base_url="http://127.0.0.1",
        )
        health = served.get("/healthz")
        assert health.status_code == 200, health.text
        assert "replayed time" in health.json()["detail"]
        metrics = served.get("/metrics").text
        assert "bot_last_job_timestamp_seconds" in metrics
        assert "bot_last_job_age_seconds" not in metrics
        assert "bot_last_tick_age_seconds" not in metrics
        assert "bot_data_age_seconds" not in metrics  # its decisions are in replayed time too
        page = (
            TestClient(account_app(config, store, LiveClock()), base_url="http://127.0.0.1")
            .get("/")
            .text
        )
        assert "STALE" not in page
        assert "may be down" not in page
    finally:
        store.close()


# `bot run` is the one command that creates a missing state database (at its first start; `bot
# db upgrade` on purpose). The others silently created and migrated an empty one: the next `bot
# run` then started afresh on it (a person's halt forgotten, the drawdown peak reset), and an
# emergency `bot halt --flatten` through a mistyped database_url reported "halt posted" into a
# new database no bot reads.
READ_COMMANDS = {
    "status": ["status", "--json"],
    "history": ["history"],
    "halt": ["halt", "--flatten"],
    "resume": ["resume"],
    "serve": ["serve"],
    "stress": ["stress", "--from-account"],
}


def refused(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    return " ".join(result.output.split())


@pytest.mark.parametrize("command", list(READ_COMMANDS))
def test_no_command_but_run_creates_a_state_database(tmp_path: Path, command: str) -> None:
    cfg = write_config(tmp_path, contracts=1)
    database = tmp_path / "state.db"
    name, *rest = READ_COMMANDS[command]
    out = refused(name, "--config", str(cfg), *rest)
    assert f"runtime.database_url: no state database at {database}: no bot has run there" in out
    assert "bot db upgrade --config" in out  # how to make one on purpose
    assert not database.exists()
    assert not (tmp_path / "state.db.lock").exists()
    if command == "halt":
        assert out.startswith("error: halt not posted")


def test_a_database_moved_away_stays_missing_whatever_reads_it(tmp_path: Path) -> None:
    """The reviewer's sequence: a paper bot ran and a person halted it; the database is moved
    away by accident. `bot status` said nothing was wrong (it made an empty database), and the
    next `bot run` started afresh on that, the halt forgotten. Now every command says the
    database is missing although a bot ran on it, and `bot run` still refuses to start."""
    cfg = str(write_config(tmp_path, contracts=1))
    data = str(ROOT / "data" / "sample")
    invoke("run", "--config", cfg, "--once", "--replay", data)
    invoke("halt", "--config", cfg, "--reason", "a person looked")
    database = tmp_path / "state.db"
    database.rename(tmp_path / "moved-away.db")
    for name, *rest in READ_COMMANDS.values():
        out = refused(name, "--config", cfg, *rest)
        assert f"the state database {database} is missing, but a bot ran on it" in out
        assert not database.exists()
    out = refused("run", "--config", cfg, "--once", "--replay", data)
    assert "is missing, but a bot ran on it" in out
    assert not database.exists()
    (tmp_path / "moved-away.db").rename(database)  # put back: the halt is still there
    invoke("run", "--config", cfg, "--once", "--replay", data)
    status = json.loads(invoke("status", "--config", cfg, "--json"))
    assert (status["state"], status["state_reason"]) == ("halted", "a person looked")


def test_a_replay_directory_without_data_leaves_no_database_behind(tmp_path: Path) -> None:
    """The start failed on its --replay directory after it had created the database and its
    lock file (which says a bot ran there): once the leftover file was deleted, the corrected
    start was refused as "missing, but a bot ran on it". The data is read first now."""
    cfg = str(write_config(tmp_path, contracts=1))
    empty = tmp_path / "emptydata"
    empty.mkdir()
    out = refused("run", "--config", cfg, "--once", "--replay", str(empty))
    assert "no market data files" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml", "emptydata", "logs"]
    invoke("run", "--config", cfg, "--once", "--replay", str(ROOT / "data" / "sample"))
    assert json.loads(invoke("status", "--config", cfg, "--json"))["state"] == "active"


def test_a_start_refused_on_a_file_that_is_not_a_database_leaves_no_mark(tmp_path: Path) -> None:
    """runtime.database_url named a file that is not a database: the start was refused, but
    its lock file kept the pid written when the lock was taken. Once the wrong file was
    removed, every command said the database "is missing, but a bot ran on it ... Put it
    back" though no bot ever ran there. Only a start that ran leaves the mark now."""
    cfg = str(write_config(tmp_path, contracts=1))
    data = str(ROOT / "data" / "sample")
    database = tmp_path / "state.db"
    database.write_text("not a database\n")
    out = refused("run", "--config", cfg, "--once", "--replay", data)
    assert "file is not a database" in out
    database.unlink()  # the user removes the wrong file
    out = refused("status", "--config", cfg)
    assert f"no state database at {database}: no bot has run there" in out
    invoke("run", "--config", cfg, "--once", "--replay", data)  # the first start creates it
    assert json.loads(invoke("status", "--config", cfg, "--json"))["state"] == "active"
    database.unlink()  # a bot ran there: its database gone is still refused
    out = refused("run", "--config", cfg, "--once", "--replay", data)
    assert f"the state database {database} is missing, but a bot ran on it" in out


def test_a_refused_start_on_a_database_a_bot_ran_on_leaves_it_marked(tmp_path: Path) -> None:
    """A database a bot ran on whose lock file says nothing (copied from a backup onto
    another machine): a start refused on it (another kind of run) still leaves the mark that
    a bot ran there, read from the runs the database holds."""
    cfg = str(write_config(tmp_path, contracts=1))
    data = str(ROOT / "data" / "sample")
    invoke("run", "--config", cfg, "--once", "--replay", data)
    (tmp_path / "state.db.lock").write_text("")  # as a backup restored without it
    out = refused("run", "--config", cfg, "--once")  # paper on live prices: another kind
    assert "holds the state of a paper-replay bot" in out
    database = tmp_path / "state.db"
    database.unlink()
    out = refused("status", "--config", cfg)
    assert f"the state database {database} is missing, but a bot ran on it" in out


@pytest.mark.postgres
@pytest.mark.skipif(
    not POSTGRES_URL,
    reason='BOT_TEST_POSTGRES_URL is not set (eval "$(bash scripts/ci_postgres.sh)")',
)
def test_a_read_command_does_not_migrate_an_empty_postgresql_database(tmp_path: Path) -> None:
    """PostgreSQL: a missing database is the server's error; an empty one (no tables) is
    refused by the schema check, and stays empty (only `bot db upgrade` creates the tables)."""
    cfg = write_config(tmp_path, contracts=1)
    with fresh_database("postgres", tmp_path) as url:
        cfg.write_text(cfg.read_text().replace(f"sqlite:///{tmp_path / 'state.db'}", url))
        for name, *rest in READ_COMMANDS.values():
            out = refused(name, "--config", str(cfg), *rest)
            assert "has no schema (empty or never migrated)" in out
            assert migrate.current_revision(url) is None
