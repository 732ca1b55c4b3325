"""The database goes away under a running bot: a dropped PostgreSQL connection is replaced at
the next use (pre-ping), and a database that cannot be reached is one typed, clear error
(:class:`StoreUnavailable`), never a driver traceback that the runner cannot tell apart."""

from __future__ import annotations

import socket
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from bot.clock import LiveClock
from bot.domain.enums import EventKind, TradingState
from bot.ports.store import RiskEvent, RiskMemory
from bot.store.migrate import engine_url, safe_url, upgrade
from bot.store.sql import SqlStore, StoreUnavailable, make_engine
from tests.store.conftest import POSTGRES_URL

WALL = LiveClock()

T0 = 1_750_000_000_000


def event(ts_ms: int) -> RiskEvent:
    return RiskEvent(
        ts_ms=ts_ms, kind=EventKind.TICK_FAILED, symbol=None, state=TradingState.ACTIVE, reason="x"
    )


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_postgres_server_is_store_unavailable() -> None:
    url = f"postgresql+psycopg://bot:hidden-pw@127.0.0.1:{closed_port()}/state?connect_timeout=2"
    store = SqlStore(make_engine(url))
    try:
        with pytest.raises(StoreUnavailable) as write:
            store.record_event(event(T0))
        with pytest.raises(StoreUnavailable) as read:
            store.load_risk_memory()
    finally:
        store.close()
    assert "cannot write risk event" in str(write.value)
    assert "cannot read" in str(read.value)
    for exc in (write.value, read.value):
        assert "127.0.0.1" in str(exc)
        assert "hidden-pw" not in str(exc)  # the password is masked


def test_a_corrupted_sqlite_file_is_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database, just bytes " * 200)
    store = SqlStore(make_engine(f"sqlite:///{path}"))
    try:
        with pytest.raises(StoreUnavailable, match="file is not a database"):
            store.save_risk_memory(
                RiskMemory(
                    state=TradingState.ACTIVE,
                    state_reason="start",
                    peak_equity=Decimal(1),
                    day_start_ms=0,
                    day_start_equity=Decimal(1),
                    sticky=False,
                )
            )
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.skipif(
    not POSTGRES_URL,
    reason='BOT_TEST_POSTGRES_URL is not set (eval "$(bash scripts/ci_postgres.sh)")',
)
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_dropped_postgres_connection_is_replaced(store: SqlStore) -> None:
    store.record_event(event(T0))
    with store.engine.connect() as conn:  # the pooled connection the store uses
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:  # as a server restart or a network cut would
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
            deadline = WALL.monotonic() + 10  # it only signals: wait until the session is gone
            while (
                WALL.monotonic() < deadline
                and conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                ).scalar_one()
            ):
                WALL.sleep(0.05)
    finally:
        admin.dispose()
    store.record_event(event(T0 + 1))  # pre-ping finds it dead and connects again
    assert [e.ts_ms for e in store.recent_events(10)] == [T0 + 1, T0]


class PoolHog:
    """Holds every connection of a one-connection pool, as a query stuck on a lock or a thread
    that never gives its connection back would."""

    def __init__(self, store: SqlStore) -> None:
        self._held = store.engine.connect()

    def release(self) -> None:
        self._held.close()


def test_an_exhausted_connection_pool_is_store_unavailable(store_url: str) -> None:
    # sqlalchemy.exc.TimeoutError ("QueuePool limit ... timed out") is no DBAPIError: it left
    # the store as it came, which the runner took for a bug, not for an unavailable database.
    upgrade(store_url)
    engine = create_engine(engine_url(store_url), pool_size=1, max_overflow=0, pool_timeout=0.2)
    store = SqlStore(engine)
    hog = PoolHog(store)
    try:
        with pytest.raises(StoreUnavailable) as write:
            store.record_event(event(T0))
        with pytest.raises(StoreUnavailable) as read:
            store.load_risk_memory()
        hog.release()
        store.record_event(event(T0))  # the connection is back: the store works again
        assert [e.ts_ms for e in store.recent_events(10)] == [T0]
    finally:
        store.close()
    assert "cannot write risk event" in str(write.value)
    assert "cannot read" in str(read.value)
    for exc in (write.value, read.value):
        message = str(exc)
        assert "no free connection in the connection pool" in message
        assert "QueuePool limit of size 1 overflow 0 reached" in message
        assert safe_url(store_url) in message


@pytest.mark.postgres
@pytest.mark.skipif(
    not POSTGRES_URL,
    reason='BOT_TEST_POSTGRES_URL is not set (eval "$(bash scripts/ci_postgres.sh)")',
)
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_postgres_database_emptied_under_the_bot_is_store_unavailable(
    store: SqlStore, store_url: str
) -> None:
    # Dropped and created again under a running bot (its lock is taken again on the new one):
    # every statement failed as a ProgrammingError, which the runner took for a bug, not for
    # a database that keeps nothing.
    store.record_event(event(T0))
    schema = str(make_url(store_url).query["options"]).split("=", 1)[1]  # -csearch_path=...
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    finally:
        admin.dispose()
    with pytest.raises(StoreUnavailable) as write:
        store.record_event(event(T0 + 1))
    with pytest.raises(StoreUnavailable) as read:
        store.load_risk_memory()
    assert "cannot write risk event" in str(write.value)
    assert "cannot read" in str(read.value)
    for exc in (write.value, read.value):
        assert "does not exist" in str(exc)
        assert "dropped and created again, or emptied, under the running bot" in str(exc)
