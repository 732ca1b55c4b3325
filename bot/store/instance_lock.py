"""One running bot per state database.

Two ``bot run`` processes on one state database would both trade the same account from the same
records: both read the same risk memory, both advance the same paper account, both number their
client order ids from the same sequence. The second one is refused at start with a message that
names the database and the process that holds it.

* SQLite: an exclusive ``flock`` on ``<database file>.lock`` (beside the database). The operating
  system drops it when the process ends in any way, ``kill -9`` included, so a crash never
  leaves a stale lock behind. The file itself is never deleted (deleting a lock file races with
  a process that is opening it); it holds the holder's pid for the message. It is also the mark
  that a bot ran on the database (:attr:`InstanceLock.used_before`: a database file gone since
  was deleted or moved, and is not replaced by an empty one), so a holder that ran no bot there
  (a start refused before it recorded its run: a file that is not a database, a database of
  another kind of run, a live start declined; ``bot db upgrade``) puts back what it found when
  it lets go. Only :meth:`InstanceLock.mark_ran` keeps its pid there.
* PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``,
  https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS) held by one
  connection of its own for the whole run, keyed by the database and schema. The server drops
  it when that connection ends, a killed bot included. A connection dropped mid-run loses the
  lock: :meth:`InstanceLock.check`, called before every job, takes it again on a new connection
  or stops the job (and trading) if another bot took it meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bot.errors import BotError

LOCK_SUFFIX = ".lock"


class AlreadyRunning(BotError):
    """Another bot holds the state database (or took it while this one's connection was down)."""


class LockLost(BotError):
    """The lock on the state database could not be confirmed: the job must not trade."""


@dataclass(slots=True)
class _FileLock:
    path: Path
    handle: IO[str]
    previous: str = ""  # the pid the last process that ran a bot on it left in the file
    ran: bool = False  # this process ran a bot on the database: its pid stays in the file

    def check(self) -> None:
        """A ``flock`` cannot be lost while its file descriptor is open."""

    def release(self) -> None:
        import fcntl

        try:
            if not self.ran:
                # (still holding the flock: no other process reads the file half written; one
                # that cannot be written keeps this pid: the conservative side)
                with contextlib.suppress(OSError):
                    self.handle.seek(0)
                    self.handle.truncate()
                    self.handle.write(self.previous)
                    self.handle.flush()
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        finally:
            self.handle.close()


class _AdvisoryLock:
    def __init__(self, url: str, where: str) -> None:
        from sqlalchemy import create_engine, pool

        from bot.store.migrate import engine_url

        self._where = where
        # A connection of its own, outside the store's pool: the lock lives as long as it does.
        self._engine = create_engine(
            engine_url(url), poolclass=pool.NullPool, isolation_level="AUTOCOMMIT"
        )
        self._conn: Any = None
        self._key: int | None = None
        self._lost: str | None = None  # why the lock is gone for good
        self._pid: int | None = None  # the server process of the connection holding the lock
        self._held = False  # whether self._conn is the connection that holds it
        if not self._take():
            holder = self._holder()
            self.release()
            raise AlreadyRunning(
                f"another bot is running on the state database {where}"
                f"{holder}: stop it first (one bot per state database)"
            )

    def _take(self) -> bool:
        from sqlalchemy import text

        self._conn = self._engine.connect()
        if self._key is None:
            db, schema = self._conn.execute(
                text("SELECT current_database(), current_schema()")
            ).one()
            self._key = advisory_key(str(db), str(schema))
        got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key})
        if not bool(got.scalar_one()):
            return False
        self._pid = int(self._conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        self._held = True
        return True

    def _holder_pid(self) -> int | None:
        from sqlalchemy import text

        row = self._conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = :k"
            ),
            {"k": self._key},
        ).first()
        return int(row[0]) if row is not None else None

    def _holder(self) -> str:
        try:
            holder = _advisory_holder(self._conn, self._key)
        except Exception:  # only decorates the message
            return ""
        return f" ({holder})" if holder is not None else ""

    def check(self) -> None:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        if self._lost is not None:
            raise AlreadyRunning(self._lost)  # never again on a connection without the lock
        if self._held:
            try:
                self._conn.execute(text("SELECT 1"))
                return
            except SQLAlchemyError:
                self._held = False  # the connection is gone, and the lock with it
        with contextlib.suppress(SQLAlchemyError):
            self._conn.close()
        try:
            got = self._take()
        except SQLAlchemyError as exc:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise LockLost(
                f"the state database {self._where} cannot be reached to confirm this bot's "
                f"lock: {type(exc).__name__}: {lines[0] if lines else ''}"
            ) from None
        if not got:
            old_pid, holder = self._pid, self._holder_or_none()
            if holder is not None and holder == old_pid:
                # Our own old session, which the server has not noticed is gone (a network cut
                # lasts until its TCP keepalive): end it; the next job takes the lock.
                with contextlib.suppress(SQLAlchemyError):
                    self._conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": old_pid})
                raise LockLost(
                    f"the state database {self._where} still holds this bot's lock on its old "
                    f"connection (server process {old_pid}); it was ended, the lock is taken "
                    "again at the next job"
                )
            self._lost = (
                f"another bot took the state database {self._where} while this bot's "
                "connection was down: this bot stops trading; stop one of them"
            )
            raise AlreadyRunning(self._lost)

    def _holder_or_none(self) -> int | None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return self._holder_pid()
        except SQLAlchemyError:
            return None

    def release(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()  # ends the session: the server releases the lock
        finally:
            self._engine.dispose()


def _advisory_holder(conn: Any, key: int | None) -> str | None:
    """The server process holding the bot's advisory lock ``key``, as words; None if none."""
    from sqlalchemy import text

    row = conn.execute(
        text(
            "SELECT a.pid, a.client_addr, a.backend_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = :k"
        ),
        {"k": key},
    ).first()
    if row is None:
        return None
    return f"server process {row[0]} from {row[1] or 'a local socket'} since {row[2]}"


def running_holder(url: str) -> str | None:
    """The bot running on the state database at ``url`` now (the process holding its instance
    lock, as words: "process 4242"), or None when no bot holds it. Looked at, not taken: for
    the message of a command refused while a bot runs (an older version's, on a database it
    has not migrated yet).

    SQLite: a shared ``flock`` tried without waiting on the lock file (opened read-only, never
    written); a running bot's exclusive one refuses it. It is let go at once: a bot starting in
    that instant is refused as if another ran, and says so (rare, and only on this path).
    PostgreSQL: the advisory lock looked up in ``pg_locks``, nothing taken."""
    from bot.store.migrate import sqlite_file

    if url.startswith("sqlite"):
        path = sqlite_file(url)
        return None if path is None else _file_holder(lock_path(path))
    from sqlalchemy import create_engine, pool, text

    from bot.store.migrate import engine_url

    engine = create_engine(engine_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
            return _advisory_holder(conn, advisory_key(str(db), str(schema)))
    finally:
        engine.dispose()


def _file_holder(path: Path) -> str | None:
    import fcntl

    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return None  # no bot ever took it
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = handle.read().strip()
            return f"process {pid}" if pid else "a process whose pid its lock file does not say"
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None


def advisory_key(database: str, schema: str) -> int:
    """A stable advisory-lock key for the bot on ``database``.``schema``: 63 bits, so that it
    reads back the same from ``pg_locks`` (two unsigned 32-bit halves)."""
    digest = hashlib.sha256(f"perp-risk-bot:{database}:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class InstanceLock:
    """Held by a running bot for the lifetime of the process (see the module docstring)."""

    def __init__(self, impl: _FileLock | _AdvisoryLock | None) -> None:
        self._impl = impl

    @classmethod
    def acquire(cls, url: str) -> InstanceLock:
        """Take the lock of the state database at ``url``; :class:`AlreadyRunning` if held."""
        from bot.store.migrate import safe_url, sqlite_file

        where = safe_url(url)
        if url.startswith("sqlite"):
            path = sqlite_file(url)
            if path is None:  # an in-memory database cannot be shared by two processes
                return cls(None)
            return cls(_lock_file(path, where))
        return cls(_AdvisoryLock(url, where))

    @property
    def used_before(self) -> str | None:
        """The last process that ran a bot on this SQLite database before this one, as its lock
        file says, or None: no bot ran there, or not a SQLite file."""
        impl = self._impl
        return impl.previous or None if isinstance(impl, _FileLock) else None

    def mark_ran(self) -> None:
        """A bot runs on this database (it opened it and recorded its run, or finds a run of an
        earlier bot there): the lock file keeps this process's pid when it lets go, for
        :attr:`used_before` to say so to the next start. Without it, the lock file is left as
        it was found: a start refused on a file that is not a database said "a bot ran on it"
        about that path from then on, once the wrong file was removed."""
        if isinstance(self._impl, _FileLock):
            self._impl.ran = True

    def check(self) -> None:
        """Raise unless this process still holds the lock (before every job)."""
        if self._impl is not None:
            self._impl.check()

    def release(self) -> None:
        impl, self._impl = self._impl, None
        if impl is not None:
            impl.release()


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + LOCK_SUFFIX)


def _lock_file(database: Path, where: str) -> _FileLock:
    import fcntl

    path = lock_path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise AlreadyRunning(
            f"another bot is running on the state database {where}"
            f"{f' (process {holder})' if holder else ''}: stop it first "
            f"(one bot per state database; lock file {path})"
        ) from None
    except BaseException:
        handle.close()
        raise
    handle.seek(0)
    previous = handle.read().strip()
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return _FileLock(path, handle, previous)
