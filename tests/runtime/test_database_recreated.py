"""The state database's tables dropped and created again under a running bot (``bot db upgrade``
after a drop, an empty dump restored): the bot carried on writing into the new, empty database
as if it held its state (a halt, the drawdown peak, which positions are its own, its intents).

Now the database carries an id written with its schema (``database_identity``); the running
bot compares it with the one it read at open before every job: a changed or missing id fails
the job in one line with the ``store_unavailable`` alert, and nothing more is written there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from sqlalchemy import create_engine, func, inspect, make_url, select, table
from sqlalchemy import text as sql

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.store.migrate import safe_url, upgrade
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config
from tests.runtime.test_alerts import Receiver, receiver, set_runtime
from tests.store.conftest import BACKENDS, POSTGRES_URL, fresh_database

__all__ = ["receiver"]  # the webhook receiver fixture

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

START = 1_748_822_400_000  # 2025-06-02T00:00Z
HOUR = 3_600_000


def drop_every_table(url: str) -> None:
    """What a ``DROP`` of the database (or of its schema) leaves: no table at all."""
    if url.startswith("sqlite"):
        engine = create_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(sql("PRAGMA foreign_keys = OFF"))
                for table in inspect(conn).get_table_names():
                    conn.execute(sql(f'DROP TABLE "{table}"'))
        finally:
            engine.dispose()
        return
    schema = str(make_url(url).query["options"]).split("=", 1)[1]  # -csearch_path=...
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sql(f'DROP SCHEMA "{schema}" CASCADE'))
            conn.execute(sql(f'CREATE SCHEMA "{schema}"'))
    finally:
        admin.dispose()


def rows(url: str) -> dict[str, int]:
    """The number of rows of every table but the schema's own (its version and identity)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            names = inspect(conn).get_table_names()
            return {
                name: int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())
                for name in names
                if name not in ("alembic_version", "database_identity")
            }
    finally:
        engine.dispose()


def database_id(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sql("SELECT database_id FROM database_identity")).scalar()
    finally:
        engine.dispose()


@pytest.fixture(params=BACKENDS)
def paper_bot(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver
) -> Iterator[tuple[Any, Any, SimClock, str]]:
    """A paper bot replaying the bundled data on a SQLite or PostgreSQL state database."""
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]')
    with fresh_database(str(request.param), tmp_path) as url:
        text = config_path.read_text()
        config_path.write_text(text.replace(f"sqlite:///{tmp_path / 'state.db'}", url))
        config = load_config(config_path)
        upgrade(url)
        store = open_store(config, create=True)
        clock = SimClock(START)
        runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
        try:
            yield runner, paper, clock, url
        finally:
            store.close()


@pytest.mark.parametrize("recreated_at", ["head", "0003"])
def test_a_database_recreated_under_the_running_bot_stops_its_jobs_and_gets_nothing(
    paper_bot: tuple[Any, Any, SimClock, str], receiver: Receiver, recreated_at: str
) -> None:
    # recreated_at "0003": by a bot of a version before the id, so the new database has none
    runner, paper, clock, url = paper_bot
    assert runner.tick() is not None
    orders = dict(paper.sim.orders)
    assert orders, "nothing traded before the fault; the test would prove nothing"
    old_id = database_id(url)
    assert old_id
    drop_every_table(url)
    upgrade(url, recreated_at)  # `bot db upgrade` on the emptied database
    new_id = database_id(url) if recreated_at == "head" else None
    assert new_id != old_id
    failed: list[Any] = []
    sink = logger.add(
        lambda m: failed.append(m.record),
        level="INFO",
        filter=lambda r: r["level"].name == "ERROR" and " failed (" in r["message"],
    )
    try:
        for _ in range(2):
            clock.advance_to(clock.now_ms() + HOUR)
            assert runner.tick() is None  # failed, and said so: nothing into the scheduler
            runner.guard()
    finally:
        logger.remove(sink)
    assert paper.sim.orders == orders  # nothing traded on a database that holds no state
    # Nothing written into the new database: no event, alert, heartbeat, order, command.
    assert set(rows(url).values()) == {0}, rows(url)
    assert len(failed) == 4
    assert all(line["exception"] is None for line in failed)  # a named failure: one line
    assert "StoreReplaced" in failed[0]["message"]
    [body] = [b for _, b in receiver.posts if b["title"].endswith("store_unavailable")]
    message = body["message"]
    assert f"state database {safe_url(url)}" in message
    assert "was recreated under the running bot" in message
    assert f"its id was {old_id}, now {new_id or 'missing'}" in message
    assert "restart the bot" in message.lower()


def test_the_same_database_passes_the_check_job_after_job(
    paper_bot: tuple[Any, Any, SimClock, str],
) -> None:
    runner, _paper, clock, url = paper_bot
    store = runner.store
    assert isinstance(store, SqlStore)
    assert runner.tick() is not None
    store.check_identity()
    assert database_id(url) is not None
    clock.advance_to(clock.now_ms() + HOUR)
    assert runner.tick() is not None  # the same database, job after job
