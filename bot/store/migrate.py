"""Schema migrations of the SQL store, driven programmatically (no ``alembic.ini``).

The scripts live in the ``bot/store/migrations`` package so they ship with the bot. The bot never
creates tables itself: ``bot db upgrade --config FILE`` calls :func:`upgrade`, and every process
that opens the store calls :func:`ensure_current` first, which refuses an empty, older or newer
database with :class:`SchemaOutOfDate` (:class:`SchemaOlder` for one an older bot migrated).
``bot halt`` and ``bot resume`` alone also accept the older revisions of
:data:`COMMAND_REVISIONS`, so that they reach an older bot still running during an upgrade.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, pool

from bot.config.database_url import password_span
from bot.errors import BotError
from bot.extras import require

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
UPGRADE_COMMAND = "bot db upgrade --config FILE"


# The older revisions whose running bots read an operator command (``bot halt [--flatten]``,
# ``bot resume``) exactly as this version posts it, so that one can be posted to such a bot
# while it still runs during an upgrade (the new version installed, the database not yet
# migrated: ``bot db upgrade`` waits for that bot to stop). The ``commands`` table is the one of
# 0001 at every revision since (tests/store/test_migrations.py compares it at each of these with
# the head's), and every bot version that could run at 0002 to 0005 (77e1b88 to a50c722; none
# before 77e1b88 had ``bot run``) or at 0006 and 0007 (87ca2d3 until 0008 came:
# ``Runner.apply_commands``, ``SqlStore.posted_commands`` and ``command_done`` as at 87ca2d3)
# applies each unconsumed row, oldest first, at its next job: kind "halt" with the JSON arguments
# "flatten" and "reason", or "resume" with "reason". A revision is added here only once its bots
# are checked the same way; one left out is refused with the message that says how to upgrade
# (the conservative side).
COMMAND_REVISIONS: frozenset[str] = frozenset({"0002", "0003", "0004", "0005", "0006", "0007"})


class SchemaOutOfDate(BotError):
    """The database schema is not the one this version of the bot was written for."""


class SchemaOlder(SchemaOutOfDate):
    """The database is at an older revision this bot knows (``bot db upgrade`` migrates it)."""

    def __init__(self, message: str, current: str) -> None:
        super().__init__(message)
        self.current = current


def require_driver(url: str) -> None:
    """Name the ``postgres`` extra when a PostgreSQL URL's driver (psycopg) is missing."""
    parsed = engine_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        require("psycopg", "postgres", f"database url {safe_url(url)}")


def safe_url(url: str) -> str:
    """``url`` with the password masked, for messages and logs: the one before the host, and
    any given as a query parameter (libpq takes ``?password=`` and ``?sslpassword=`` too; these
    messages reach the alerts, the log and the dashboard). The one before the host is all the
    text from the user's ":" to the last "@" before the host (:func:`password_span`): one with
    an unencoded "@" is masked whole, not up to its first "@". A SQLite URL is left as written
    (no password; its path keeps its "@", not encoded as %40)."""
    if url.startswith("sqlite"):
        return url
    span = password_span(url)
    if span is not None:  # masked before SQLAlchemy reads it: it would stop at the first "@"
        url = f"{url[: span[0]]}***{url[span[1] :]}"
    parsed = make_url(url)
    hidden = {k: "***" for k in parsed.query if "password" in k.lower()}
    masked = parsed.update_query_dict(hidden).render_as_string(hide_password=True)
    return masked.replace("%2A%2A%2A", "***")  # (the query is URL-encoded)


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` pointing at the packaged migrations (and at ``url`` if given)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # Config is a ConfigParser: a literal "%" (URL-encoded passwords) must be doubled.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def sqlite_file(url: str) -> Path | None:
    """The database file of a file-backed SQLite URL, else None."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def engine_url(url: str) -> URL:
    """``url`` for ``create_engine``: a plain ``postgresql://`` uses psycopg 3 (the driver the
    bot installs; SQLAlchemy's default would be psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _engine(url: str) -> Engine:
    # No foreign_keys pragma here: batch migrations recreate tables, which foreign key
    # enforcement would obstruct (https://alembic.sqlalchemy.org/en/latest/batch.html).
    require_driver(url)
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    connect_args = {"timeout": 30} if is_sqlite else {}
    return create_engine(engine_url(url), connect_args=connect_args, poolclass=pool.NullPool)


def migration_engine(url: str) -> Engine:
    """The engine migrations run on: every transaction on it is a real one, DDL included.

    Python's sqlite3 driver (in its default, legacy transaction control, to Python 3.15) emits
    no BEGIN before DDL: each ALTER or CREATE TABLE committed on its own, before the revision
    was stamped, and a ``bot db upgrade`` killed in between left the new column with the old
    revision, which every later upgrade then failed on ("duplicate column name"). SQLAlchemy's
    documented workaround: the driver's own transaction control off, and the BEGIN emitted at
    the start of each transaction ("Transactions with SQLite and the sqlite3 driver",
    https://docs.sqlalchemy.org/en/20/dialects/sqlite.html#sqlite-transactions). SQLite's DDL
    is transactional (https://www.sqlite.org/lang_transaction.html): the migrations and the
    revision stamp then commit together or not at all, as on PostgreSQL. Only this engine:
    the store's (``sql.make_engine``) writes no DDL, and its readers keep the driver's
    behaviour (no read transaction held open between statements)."""
    engine = _engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _driver_begins_nothing)
        event.listen(engine, "begin", _begin_immediate)
    return engine


def _driver_begins_nothing(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # sqlite3: no implicit BEGIN nor COMMIT of its own


def _begin_immediate(connection: Connection) -> None:
    # IMMEDIATE: the write lock is taken with the transaction, not at its first write, so a
    # write committed by another connection meanwhile (a halt posted) cannot make this
    # transaction's first write fail as busy; the busy timeout waits for that writer instead
    # (https://www.sqlite.org/lang_transaction.html#deferred_immediate_and_exclusive_transactions).
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (default: the newest), in one transaction
    (on SQLite too: :func:`migration_engine`): a process killed part-way leaves the database at
    the revision it was, and the next upgrade starts from there.

    A missing SQLite file (and its directory) is created.
    """
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = migration_engine(url)
    try:
        with engine.begin() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
            if current is not None and current not in _known_revisions():
                # Alembic would only say "Can't locate revision": a newer bot migrated it.
                raise SchemaOutOfDate(_newer_schema(url, current))
            cfg = alembic_config(url)
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def _known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def _newer_schema(url: str, current: str) -> str:
    return (
        f"database {safe_url(url)} is at revision {current}, unknown to this bot (head "
        f"{head_revision()}): a newer version of the bot migrated it; upgrade the bot, not the "
        "database"
    )


def current_revision(url: str) -> str | None:
    """The revision the database at ``url`` is at; None for a database never migrated."""
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest revision shipped with this version of the bot."""
    head = _scripts().get_current_head()
    if head is None:  # only if the versions directory were empty
        raise SchemaOutOfDate(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def ensure_current(url: str, *, older: Collection[str] = ()) -> str:
    """Raise :class:`SchemaOutOfDate` unless the database at ``url`` is at the head revision
    (or at one of ``older``: :data:`COMMAND_REVISIONS` for posting a command); its revision.

    The message names the database (password masked), both revisions and the command to run.
    """
    where = safe_url(url)
    path = sqlite_file(url)
    if path is not None and not path.exists():
        # Checked before connecting: connecting would silently create an empty file.
        raise SchemaOutOfDate(
            f"database {where}: file {path} does not exist; create it with: {UPGRADE_COMMAND}"
        )
    head = head_revision()
    current = current_revision(url)
    if current is not None and (current == head or current in older):
        return current
    if current is None:
        problem = f"has no schema (empty or never migrated); this bot needs revision {head}"
        raise SchemaOutOfDate(f"database {where} {problem}; migrate it with: {UPGRADE_COMMAND}")
    if current in _known_revisions():
        raise SchemaOlder(older_message(url, current), current)
    raise SchemaOutOfDate(_newer_schema(url, current))


def older_message(url: str, current: str, running: str | None = None) -> str:
    """Why a database at the older revision ``current`` is refused, and what to do: migrate it;
    or, when ``running`` (the process holding its instance lock: an older bot still runs on it,
    so ``bot db upgrade`` waits for it to stop), the order that works."""
    head = head_revision()
    problem = f"database {safe_url(url)} is at revision {current}, older than this bot's {head}"
    if running is None:
        return f"{problem}; migrate it with: {UPGRADE_COMMAND}"
    meanwhile = (
        " Meanwhile this version's `bot halt` (--flatten) and `bot resume` reach the running bot."
        if current in COMMAND_REVISIONS
        else ""
    )
    return (
        f"{problem}, and a bot of that older version is running on it ({running}): the "
        "database is migrated once no bot runs on it. Stop that bot (its positions keep their "
        f"stop-loss orders on the exchange), then {UPGRADE_COMMAND}, then start this version."
        f"{meanwhile}"
    )
