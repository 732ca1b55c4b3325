"""One running bot per state database: a second one is refused, clearly, on SQLite and
PostgreSQL; a lock held by a killed process is gone; a PostgreSQL lock lost with its connection
is taken again, or stops the bot if another one took it meanwhile."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from bot.clock import LiveClock
from bot.store.instance_lock import (
    AlreadyRunning,
    InstanceLock,
    LockLost,
    _AdvisoryLock,
    advisory_key,
    lock_path,
    running_holder,
)
from bot.store.migrate import engine_url
from tests.store.conftest import POSTGRES_URL

WALL = LiveClock()


def test_a_second_lock_on_one_database_is_refused(store_url: str) -> None:
    first = InstanceLock.acquire(store_url)
    try:
        with pytest.raises(AlreadyRunning, match="another bot is running on the state database"):
            InstanceLock.acquire(store_url)
        first.check()  # the refusal did not disturb the holder
    finally:
        first.release()
    again = InstanceLock.acquire(store_url)  # released: the next start gets it
    again.release()


def test_the_refusal_names_the_database_and_the_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first = InstanceLock.acquire(url)
    try:
        with pytest.raises(AlreadyRunning) as info:
            InstanceLock.acquire(url)
    finally:
        first.release()
    message = str(info.value)
    assert str(tmp_path / "state.db") in message
    assert f"process {os.getpid()}" in message
    assert "stop it first" in message


def test_the_running_bot_is_named_without_taking_its_lock(store_url: str) -> None:
    """For the message of a command refused while a bot runs: the holder is looked at, never
    taken nor written (a bot starts afterwards as before, and its lock file is left as is)."""
    assert running_holder(store_url) is None  # no bot ever ran there
    sqlite = store_url.startswith("sqlite")
    lock = InstanceLock.acquire(store_url)
    try:
        holder = running_holder(store_url)
        assert holder is not None
        if sqlite:
            assert holder == f"process {os.getpid()}"
        else:
            assert holder.startswith("server process ")
        lock.check()
        with pytest.raises(AlreadyRunning):
            InstanceLock.acquire(store_url)
    finally:
        lock.release()
    assert running_holder(store_url) is None
    again = InstanceLock.acquire(store_url)  # the look left nothing held behind
    again.release()


def test_two_databases_do_not_share_a_lock(tmp_path: Path) -> None:
    a = InstanceLock.acquire(f"sqlite:///{tmp_path / 'a.db'}")
    b = InstanceLock.acquire(f"sqlite:///{tmp_path / 'b.db'}")
    a.release()
    b.release()


HOLDER = """
import sys, time
from bot.clock import LiveClock
from bot.store.instance_lock import InstanceLock
lock = InstanceLock.acquire(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def test_a_lock_of_a_killed_process_is_not_stale(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(AlreadyRunning, match=f"process {proc.pid}"):
            InstanceLock.acquire(url)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    lock = InstanceLock.acquire(url)  # kill -9 left no stale lock behind
    lock.release()
    assert lock_path(tmp_path / "state.db").exists()  # the file stays; only the flock goes


def test_only_a_holder_that_ran_a_bot_leaves_its_pid(tmp_path: Path) -> None:
    """The lock file is also the mark that a bot ran on the database (``used_before``): a
    holder that ran none there (a start refused before it recorded its run) leaves the file as
    it found it; one that did (``mark_ran``) leaves its pid."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    path = lock_path(tmp_path / "state.db")
    refused_start = InstanceLock.acquire(url)
    assert refused_start.used_before is None
    refused_start.release()
    assert path.read_text() == ""  # no bot ran there
    ran = InstanceLock.acquire(url)
    assert ran.used_before is None
    ran.mark_ran()
    ran.release()
    assert path.read_text() == str(os.getpid())
    path.write_text("4242")  # a bot that ran before
    refused_again = InstanceLock.acquire(url)
    assert refused_again.used_before == "4242"
    refused_again.release()
    assert path.read_text() == "4242"  # its mark kept
    again = InstanceLock.acquire(url)
    assert again.used_before == "4242"
    again.release()


def test_an_in_memory_database_needs_no_lock() -> None:
    a = InstanceLock.acquire("sqlite://")
    b = InstanceLock.acquire("sqlite:///:memory:")
    a.check()
    a.release()
    b.release()


# --- PostgreSQL: the lock lives on a connection; a dropped connection loses it ------------------

postgres = pytest.mark.skipif(
    not POSTGRES_URL,
    reason='BOT_TEST_POSTGRES_URL is not set (eval "$(bash scripts/ci_postgres.sh)")',
)


def _terminate_lock_sessions(url: str) -> int:
    """Drop the connections holding the bot's advisory lock on ``url``'s database and schema
    (as a server restart or a network cut would); returns how many."""
    probe = create_engine(engine_url(url))
    try:
        with probe.connect() as conn:
            db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
    finally:
        probe.dispose()
    key = advisory_key(str(db), str(schema))
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND ((classid::bigint << 32) | objid::bigint) = :k"
                ),
                {"k": key},
            ).scalars()
            killed = list(pids)
            for pid in killed:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            # pg_terminate_backend only signals: wait until the sessions (and locks) are gone
            deadline = WALL.monotonic() + 10
            while killed and WALL.monotonic() < deadline:
                alive = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:p)"),
                    {"p": killed},
                ).scalar_one()
                if alive == 0:
                    break
                WALL.sleep(0.05)
            return len(killed)
    finally:
        admin.dispose()


@postgres
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_lock_taken_again_after_its_connection_drops(store_url: str) -> None:
    assert make_url(store_url).get_backend_name() == "postgresql"
    lock = InstanceLock.acquire(store_url)
    try:
        assert _terminate_lock_sessions(store_url) >= 1
        lock.check()  # a new connection, the lock taken again: trading goes on
        with pytest.raises(AlreadyRunning):
            InstanceLock.acquire(store_url)  # and it is really held again
    finally:
        lock.release()


@postgres
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_lock_taken_by_another_bot_meanwhile_stops_this_one(store_url: str) -> None:
    lock = InstanceLock.acquire(store_url)
    other: InstanceLock | None = None
    try:
        _terminate_lock_sessions(store_url)
        other = InstanceLock.acquire(store_url)  # a second bot started while the first was cut
        with pytest.raises(AlreadyRunning, match="while this bot's connection was down"):
            lock.check()
    finally:
        lock.release()
        if other is not None:
            other.release()


@postgres
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_lock_held_by_our_own_lingering_session_is_taken_back(store_url: str) -> None:
    # After a network cut the server keeps the old session (and the lock) until its TCP
    # keepalive notices; the bot must not take its own old session for another bot.
    lock = InstanceLock.acquire(store_url)
    impl = lock._impl
    assert isinstance(impl, _AdvisoryLock)
    lingering = impl._conn  # the server still sees this session, holding the lock
    impl._conn = impl._engine.connect()  # the bot's side lost it: a new connection
    impl._held = False
    try:
        with pytest.raises(LockLost, match="still holds this bot's lock on its old connection"):
            lock.check()  # the old session is ended...
        deadline = WALL.monotonic() + 10
        while True:  # ...and the next job takes the lock again
            try:
                lock.check()
                break
            except LockLost:
                if WALL.monotonic() > deadline:
                    raise
                WALL.sleep(0.1)
        with pytest.raises(AlreadyRunning):
            InstanceLock.acquire(store_url)
    finally:
        with contextlib.suppress(Exception):
            lingering.close()
        lock.release()
