"""The mark a bot leaves of having run on a PostgreSQL state database (bot.store.ran_before)
and the start that reads it: only an empty database needs it, and a mark that cannot be read
is a bot that ran (which one unknown), never a traceback nor a healthy database refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.bootstrap import open_store, remember_run
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.errors import ConfigError
from bot.store.migrate import upgrade
from bot.store.ran_before import mark_path, mark_ran, ran_before
from tests.runtime.conftest import write_config
from tests.store.conftest import POSTGRES_URL, fresh_database

URL = "postgresql+psycopg://bot:secret@db.example:5432/state"


def test_a_garbled_mark_says_a_bot_ran_and_not_which(tmp_path: Path) -> None:
    mark_ran(URL, tmp_path, 4242)
    assert ran_before(URL, tmp_path) == "4242"
    path = mark_path(URL, tmp_path)
    assert path is not None
    path.write_bytes(b"\xff\xfe\x00 half a write")  # not UTF-8: it raised UnicodeDecodeError
    assert ran_before(URL, tmp_path) == "unknown"


def test_no_mark_in_a_log_dir_that_is_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "logs"
    not_a_dir.write_text("")
    assert ran_before(URL, not_a_dir) is None


def _postgres_config(tmp_path: Path, url: str) -> BotConfig:
    path = write_config(tmp_path, contracts=1)
    path.write_text(path.read_text().replace(f"sqlite:///{tmp_path / 'state.db'}", url))
    return load_config(path)


@pytest.mark.postgres
@pytest.mark.skipif(
    not POSTGRES_URL,
    reason='BOT_TEST_POSTGRES_URL is not set (eval "$(bash scripts/ci_postgres.sh)")',
)
def test_a_database_at_its_schema_opens_whatever_the_mark(tmp_path: Path) -> None:
    """bot status, the dashboard or a restart, run where the mark cannot be read (another
    user's log directory; here the mark is a directory): the database is at its schema, so the
    mark is not needed. It was read first, and the database refused as 'cannot open the
    database ... IsADirectoryError'."""
    with fresh_database("postgres", tmp_path) as url:
        config = _postgres_config(tmp_path, url)
        upgrade(url)
        remember_run(config)
        mark = mark_path(url, config.runtime.log_dir)
        assert mark is not None
        assert mark.exists()
        mark.unlink()
        mark.mkdir()  # reading it is an OSError, as a mark this user may not read
        open_store(config).close()


@pytest.mark.postgres
@pytest.mark.skipif(
    not POSTGRES_URL,
    reason='BOT_TEST_POSTGRES_URL is not set (eval "$(bash scripts/ci_postgres.sh)")',
)
def test_an_emptied_database_with_a_garbled_mark_is_refused_as_emptied(tmp_path: Path) -> None:
    with fresh_database("postgres", tmp_path) as url:
        config = _postgres_config(tmp_path, url)
        remember_run(config)
        mark = mark_path(url, config.runtime.log_dir)
        assert mark is not None
        mark.write_bytes(b"\xff\xfe")
        with pytest.raises(ConfigError, match=r"is empty \(no tables\), but a bot ran on it"):
            open_store(config)
