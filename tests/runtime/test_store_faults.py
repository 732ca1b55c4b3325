"""The state database fails under a running paper bot (a read-only file, a full disk, a lost
connection): nothing is sent that cannot be recorded, no job raises into the scheduler, the
owner is alerted through the webhook even though the store cannot record the alert, and the
bot carries on once the database is back.

The fault is real SQLite behaviour, switched on per connection: ``PRAGMA query_only`` makes
every write fail with "attempt to write a readonly database", as a read-only file does (tests
run as root, for whom a ``chmod`` would not).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from rich.console import Console
from sqlalchemy import create_engine, event, make_url
from sqlalchemy import text as text_clause

from bot.bootstrap import build_paper, open_store
from bot.cli.run import run_bot
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import TradingState
from bot.domain.orders import OrderRequest
from bot.errors import ConfigError
from bot.ports.store import OrderRecord, RiskEvent, RiskMemory
from bot.store.instance_lock import AlreadyRunning
from bot.store.migrate import SchemaOutOfDate, current_revision, upgrade
from bot.store.sql import SqlStore, StoreUnavailable, make_engine
from tests.runtime.conftest import ROOT, write_config
from tests.runtime.test_alerts import Receiver, receiver, set_runtime
from tests.store.conftest import POSTGRES_URL, fresh_database

__all__ = ["receiver"]  # the webhook receiver fixture

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

START = 1_748_822_400_000  # 2025-06-02T00:00Z
HOUR = 3_600_000


class ReadOnlySwitch:
    """Makes every connection of ``store`` read-only (or writable again) at its next use."""

    def __init__(self, store: SqlStore) -> None:
        self.on = False
        event.listen(store.engine, "checkout", self._checkout)

    def _checkout(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA query_only = {1 if self.on else 0}")
        cur.close()


class FailsAtTheIntent(SqlStore):
    """With ``fail_at_intent`` set, the disk fills up at the moment an order intent is written
    (every connection read-only from then on)."""

    switch: ReadOnlySwitch
    fail_at_intent = False
    refused: list[str]

    fail_next_memory_save = False

    def save_risk_memory(self, memory: RiskMemory, event: RiskEvent | None = None) -> None:
        if not self.fail_next_memory_save:
            return super().save_risk_memory(memory, event)
        self.fail_next_memory_save = False  # the disk is full for this one write
        self.switch.on = True
        self.engine.dispose()
        try:
            return super().save_risk_memory(memory, event)
        finally:
            self.switch.on = False
            self.engine.dispose()

    def save_intent(self, request: OrderRequest, ts_ms: int) -> OrderRecord:
        if self.fail_at_intent:
            self.switch.on = True
            self.engine.dispose()  # no connection made before the fault escapes it
            self.refused.append(request.client_id)
        return super().save_intent(request, ts_ms)


@pytest.fixture
def paper_bot(tmp_path: Path, receiver: Receiver) -> Iterator[tuple[Any, Any, SimClock, Any]]:
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]')
    config = load_config(config_path)
    open_store(config, create=True).close()  # creates the database at the current schema
    store = FailsAtTheIntent(make_engine(config.runtime.database_url))
    store.switch = ReadOnlySwitch(store)
    store.refused = []
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    try:
        yield runner, paper, clock, store
    finally:
        store.switch.on = False
        store.close()


def test_a_write_to_a_read_only_database_names_the_database_and_the_write(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, contracts=1))
    store = open_store(config, create=True)
    switch = ReadOnlySwitch(store)
    switch.on = True
    store.engine.dispose()  # new connections: the switch applies to every one
    try:
        with pytest.raises(StoreUnavailable) as info:
            store.post_command("halt", "{}", START)
    finally:
        store.close()
    message = str(info.value)
    assert str(tmp_path / "state.db") in message
    assert "cannot write command 'halt'" in message
    assert "readonly database" in message


def test_a_read_only_database_sends_nothing_and_still_alerts(
    paper_bot: tuple[Any, Any, SimClock, Any], receiver: Receiver
) -> None:
    runner, paper, clock, store = paper_bot
    assert runner.tick() is not None  # a normal first tick: the paper account opens a position
    orders_before = dict(paper.sim.orders)
    assert orders_before, "nothing traded before the fault; the test would prove nothing"
    store.switch.on = True
    for _ in range(3):  # ticks and guards while the database is read-only (20 minutes apart)
        clock.advance_to(clock.now_ms() + HOUR // 3)
        assert runner.tick() is None  # failed, and said so: no exception into the scheduler
        runner.guard()
    # Nothing reached the (paper) exchange while no intent could be recorded.
    assert paper.sim.orders == orders_before
    # The owner was told, once per dedup window, through the webhook, though no alert could
    # be recorded in the store.
    titles = receiver.titles()
    assert titles.count("[main] critical: store_unavailable") == 1, titles
    [body] = [b for _, b in receiver.posts if b["title"].endswith("store_unavailable")]
    assert "readonly database" in body["message"]
    assert "Nothing is sent while the state database cannot record it" in body["message"]
    assert "[main] warning: tick_failed:tick" in titles
    # The database is back: the bot carries on where it stopped.
    store.switch.on = False
    clock.advance_to(clock.now_ms() + HOUR)
    assert runner.tick() is not None
    assert store.unresolved_orders() == []


def test_an_intent_that_cannot_be_persisted_is_not_sent(
    paper_bot: tuple[Any, Any, SimClock, Any], receiver: Receiver
) -> None:
    runner, paper, _clock, store = paper_bot
    store.fail_at_intent = True
    assert runner.tick() is None  # the tick failed at its first intent
    assert store.refused, "no order was attempted; the test would prove nothing"
    [cid] = store.refused  # the first refusal ended the tick
    assert cid not in paper.sim.orders  # never sent
    assert paper.sim.orders == {}
    assert "[main] critical: store_unavailable" in receiver.titles()
    store.switch.on = False
    store.engine.dispose()
    assert store.get_order(cid) is None


def test_a_lock_taken_by_another_bot_stops_this_one_without_touching_the_store(
    paper_bot: tuple[Any, Any, SimClock, Any], receiver: Receiver
) -> None:
    runner, paper, clock, store = paper_bot
    assert runner.tick() is not None
    events, orders = len(store.recent_events(10_000)), dict(paper.sim.orders)

    def lost() -> None:
        raise AlreadyRunning("another bot took the state database while this bot's connection")

    runner.before_job.append(lost)
    clock.advance_to(clock.now_ms() + HOUR)
    with pytest.raises(AlreadyRunning):
        runner.tick()  # raises: the scheduler stops the run (test_scheduler_faults)
    with pytest.raises(AlreadyRunning):
        runner.guard()
    assert paper.sim.orders == orders  # nothing traded
    assert len(store.recent_events(10_000)) == events  # nothing written in the other's store
    assert "[main] critical: lock_lost" in receiver.titles()


def test_a_halt_whose_application_fails_is_applied_at_the_next_job(
    paper_bot: tuple[Any, Any, SimClock, Any],
) -> None:
    runner, _paper, clock, store = paper_bot
    assert runner.tick() is not None
    store.post_command("halt", json.dumps({"reason": "going on holiday"}), clock.now_ms())
    store.fail_next_memory_save = True  # the halt cannot be saved: the job fails
    clock.advance_to(clock.now_ms() + 60_000)
    runner.guard()
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.ACTIVE  # not applied yet...
    clock.advance_to(clock.now_ms() + 60_000)
    runner.guard()  # ...and not lost: the next job applies it
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.HALTED
    assert memory.state_reason == "going on holiday"
    assert store.posted_commands() == []


def test_a_named_failure_is_one_line_and_a_bug_keeps_its_traceback(
    paper_bot: tuple[Any, Any, SimClock, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An outage fails every job alike: one line each (the traceback only at DEBUG); a bug in
    # the bot is what a traceback is for.
    runner, _paper, clock, store = paper_bot
    failed: list[Any] = []
    sink = logger.add(
        lambda m: failed.append(m.record),
        level="INFO",
        filter=lambda r: r["level"].name == "ERROR" and "failed (" in r["message"],
    )
    try:
        store.switch.on = True
        clock.advance_to(clock.now_ms() + HOUR)
        assert runner.tick() is None
        store.switch.on = False

        def broken() -> None:
            raise ValueError("a bug")

        monkeypatch.setattr(runner.engine, "tick", broken)
        clock.advance_to(clock.now_ms() + HOUR)
        assert runner.tick() is None
    finally:
        logger.remove(sink)
    named, bug = failed
    assert "StoreUnavailable" in named["message"]
    assert named["exception"] is None
    assert "ValueError: a bug" in bug["message"]
    assert bug["exception"] is not None


@pytest.mark.parametrize("fault", ["deleted", "replaced"])
def test_a_database_file_deleted_or_replaced_under_the_bot_stops_its_jobs(
    paper_bot: tuple[Any, Any, SimClock, Any], receiver: Receiver, fault: str, tmp_path: Path
) -> None:
    # SQLite keeps writing through its open connections to the file it opened: without a
    # check every job went on "recording" into a deleted file (lost at the next start) or,
    # the file replaced, into two databases at once, and traded on it.
    runner, paper, clock, _store = paper_bot
    assert runner.tick() is not None
    orders = dict(paper.sim.orders)
    assert orders, "nothing traded before the fault; the test would prove nothing"
    database = tmp_path / "state.db"  # (write_config's)
    kept = database.with_name("kept.db")
    os.replace(database, kept)  # deleted (moved away) with the bot running
    if fault == "replaced":
        shutil.copyfile(kept, database)  # a copy put in its place: another file
    clock.advance_to(clock.now_ms() + HOUR)
    assert runner.tick() is None  # failed, and said so
    runner.guard()
    assert paper.sim.orders == orders  # nothing traded on a database that keeps nothing
    [body] = [b for _, b in receiver.posts if b["title"].endswith("store_unavailable")]
    assert str(database) in body["message"]
    assert ("deleted or moved" if fault == "deleted" else "replaced") in body["message"]
    os.replace(kept, database)  # the file is back: the bot carries on
    clock.advance_to(clock.now_ms() + HOUR)
    assert runner.tick() is not None


def test_a_restart_refuses_to_replace_a_deleted_database_by_an_empty_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database gone, a restart made a new empty one: the halt a person set, the drawdown
    # peak and the bot's own positions (then "not opened by this bot", left unmanaged) were
    # silently forgotten, and it traded on.
    monkeypatch.delenv("BOT_API_KEY", raising=False)
    config_path = write_config(tmp_path, contracts=1)
    database = tmp_path / "state.db"
    console = Console(file=io.StringIO(), width=400)

    def run_once() -> int:
        return run_bot(config_path, live=False, yes=True, once=True, ticks=None,
                       replay=ROOT / "data" / "sample", speed=1.0, console=console)  # fmt: skip

    assert run_once() == 0
    assert database.exists()
    database.unlink()
    with pytest.raises(ConfigError) as info:
        run_once()
    message = str(info.value)
    assert f"state database {database} is missing, but a bot ran on it" in message
    assert "bot db upgrade" in message
    assert not database.exists()  # nothing made in its place
    # Starting afresh on purpose: an empty database made by hand, then the bot starts.
    upgrade(load_config(config_path).runtime.database_url)
    assert run_once() == 0


def test_an_exhausted_connection_pool_fails_the_job_as_an_unavailable_database(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Every pooled connection held (a query stuck on a lock, a thread that keeps its
    # connection): SQLAlchemy's pool TimeoutError went through as an unnamed error, a bug's
    # traceback and an alert that named no database.
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(config_path, alert_urls=f'["{receiver.url}"]')
    config = load_config(config_path)
    open_store(config, create=True).close()  # creates the database at the current schema
    url = config.runtime.database_url
    store = SqlStore(create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2))
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    failed: list[Any] = []
    sink = logger.add(
        lambda m: failed.append(m.record),
        level="INFO",
        filter=lambda r: r["level"].name == "ERROR" and "failed (" in r["message"],
    )
    try:
        assert runner.tick() is not None
        orders = dict(paper.sim.orders)
        held = store.engine.connect()  # the pool's only connection, kept
        clock.advance_to(clock.now_ms() + HOUR)
        assert runner.tick() is None  # failed, and said so: no exception into the scheduler
        assert paper.sim.orders == orders  # nothing sent that could not be recorded
        held.close()
        clock.advance_to(clock.now_ms() + HOUR)
        assert runner.tick() is not None  # the connection is back: the bot carries on
    finally:
        logger.remove(sink)
        store.close()
    [line] = failed
    assert "StoreUnavailable" in line["message"]
    assert line["exception"] is None  # a named failure: one line, not a bug's traceback
    [body] = [b for _, b in receiver.posts if b["title"].endswith("store_unavailable")]
    assert f"state database {url}" in body["message"]
    assert "no free connection in the connection pool" in body["message"]
    [failure] = [b for _, b in receiver.posts if b["title"].endswith("tick_failed:tick")]
    assert "tick failed: StoreUnavailable" in failure["message"]


@pytest.mark.postgres
@pytest.mark.skipif(
    not POSTGRES_URL,
    reason='BOT_TEST_POSTGRES_URL is not set (eval "$(bash scripts/ci_postgres.sh)")',
)
def test_a_restart_refuses_a_postgres_database_dropped_and_created_again_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SQLite database file is remembered by its lock file; a PostgreSQL database dropped
    # and created again (a container's volume made anew) only read as "never migrated:
    # migrate it", and migrating it started the bot afresh: the halt a person set, the
    # drawdown peak and the bot's own positions were forgotten.
    monkeypatch.delenv("BOT_API_KEY", raising=False)
    console = Console(file=io.StringIO(), width=400)
    with fresh_database("postgres", tmp_path) as url:
        config_path = write_config(tmp_path, contracts=1)
        text = config_path.read_text()
        sqlite_url = f"sqlite:///{tmp_path / 'state.db'}"
        assert sqlite_url in text
        config_path.write_text(text.replace(sqlite_url, url))
        schema = str(make_url(url).query["options"]).split("=", 1)[1]  # -csearch_path=...

        def run_once() -> int:
            return run_bot(config_path, live=False, yes=True, once=True, ticks=None,
                           replay=ROOT / "data" / "sample", speed=1.0, console=console)  # fmt: skip

        # A new database, never migrated: the plain message, however many starts tried it.
        for _ in range(2):
            with pytest.raises(SchemaOutOfDate, match="has no schema"):
                run_once()
        upgrade(url)
        assert run_once() == 0
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:  # dropped, and created again empty
                conn.execute(text_clause(f'DROP SCHEMA "{schema}" CASCADE'))
                conn.execute(text_clause(f'CREATE SCHEMA "{schema}"'))
        finally:
            admin.dispose()
        with pytest.raises(ConfigError) as info:
            run_once()
        message = str(info.value)
        assert "is empty (no tables), but a bot ran on it before" in message
        assert "Restore it from a backup" in message
        assert "bot db upgrade" in message
        assert current_revision(url) is None  # nothing made in its place
        # Starting afresh on purpose: its tables made by hand, then the bot starts.
        upgrade(url)
        assert run_once() == 0
