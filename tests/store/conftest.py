"""Fixtures for the SQL store: every test runs on SQLite, and on PostgreSQL when
``BOT_TEST_POSTGRES_URL`` points at a server (``eval "$(bash scripts/ci_postgres.sh)"``).

Each PostgreSQL test gets a schema of its own in that database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from bot.store.memory import MemoryStore
from bot.store.migrate import upgrade
from bot.store.sql import SqlStore

POSTGRES_URL = os.environ.get("BOT_TEST_POSTGRES_URL", "")

BACKENDS: list[Any] = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(
                not POSTGRES_URL,
                reason='BOT_TEST_POSTGRES_URL is not set (eval "$(bash scripts/ci_postgres.sh)")',
            ),
        ],
    ),
]


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of an empty database on ``backend``; drop it afterwards.

    On PostgreSQL the "database" is a schema of its own, made the connection's ``search_path``
    through the URL: as isolated for these tests, and milliseconds instead of the 0.3 s of a
    ``CREATE DATABASE``.
    """
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, unmigrated database."""
    with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[SqlStore]:
    """A store on a freshly migrated database."""
    upgrade(store_url)
    sql_store = SqlStore.open(store_url)
    yield sql_store
    sql_store.close()


@pytest.fixture(params=[pytest.param("memory", id="memory"), *BACKENDS])
def port_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore | SqlStore]:
    """Each implementation of the store port, for behaviour both must share."""
    if request.param == "memory":
        yield MemoryStore()
        return
    with fresh_database(str(request.param), tmp_path) as url:
        upgrade(url)
        sql_store = SqlStore.open(url)
        yield sql_store
        sql_store.close()
