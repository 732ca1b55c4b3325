"""Alembic environment of the SQL store.

Configured programmatically by :mod:`bot.store.migrate` (no ``alembic.ini``): it passes either an
open connection in ``config.attributes["connection"]`` or the URL as ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

import bot.store.tables
from bot.store.migrate import migration_engine

_ = bot.store.tables  # importing the module registers every table on SQLModel.metadata

config = context.config
target_metadata = SQLModel.metadata


# render_as_batch: SQLite cannot ALTER most things, batch mode recreates the table instead
# (https://alembic.sqlalchemy.org/en/latest/batch.html).
# transactional_ddl: Alembic takes SQLite's DDL for non-transactional (because of the sqlite3
# driver, which emits no BEGIN before it); SQLite's own DDL is transactional, and the bot's
# migrations run on ``migrate.migration_engine`` (``migrate.upgrade``'s connection, and the URL's
# below), which emits the BEGIN. So every migration of a run and its revision stamp are one
# transaction, and ``--sql`` wraps its script in one too.


def run_migrations_offline() -> None:
    """Emit SQL to standard output instead of running it (``--sql``)."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        render_as_batch=True,
        transactional_ddl=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: neither a connection nor sqlalchemy.url was configured")
    engine = migration_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
