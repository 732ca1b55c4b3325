"""Alembic migrations of the SQL store; run them with :func:`bot.store.migrate.upgrade`."""
