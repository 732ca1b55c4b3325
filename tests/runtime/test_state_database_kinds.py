"""One state database, one kind of run. The trader paper-trades with ``bot run --config my.toml``,
then goes live with ``bot run --config my.toml --live`` as the README shows: both on the default
``sqlite:///bot-state.db``. The live bot took the paper account's equity peak as its own, and
measured against the real wallet its first tick recorded a sticky drawdown halt and closed every
position. A start now refuses a database whose last run was of another kind (live, paper on live
prices, paper on recorded data), and a live start one whose last live run traded another venue
account (``bootstrap.check_run_kind``). Through the CLI: ``tests/e2e/test_paper_database_live.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.bootstrap import check_run_kind, open_store, venue_of
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.errors import ConfigError
from bot.store.run_modes import LIVE_RUN_MODE, PAPER_RUN_MODE, REPLAY_RUN_MODE
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config

MODES = (LIVE_RUN_MODE, PAPER_RUN_MODE, REPLAY_RUN_MODE)


def config_on(tmp_path: Path, *, exchange: str = "") -> BotConfig:
    """The example configuration on a database in ``tmp_path``; ``exchange`` replaces the
    lines of its ``[exchange]`` table up to ``demo``."""
    path = write_config(tmp_path, contracts=1)
    if exchange:
        text = path.read_text()
        old = 'name = "binanceusdm"\n'
        head, _, tail = text.partition(old)
        tail = tail[tail.index("demo = true\n") + len("demo = true\n") :]
        path.write_text(head + exchange + tail)
    return load_config(path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(config_on(tmp_path), create=True)
    try:
        yield s
    finally:
        s.close()


def record(store: SqlStore, mode: str, venue: str | None = None) -> None:
    store.open_run(mode, "/home/trader/my.toml", "vol_target", 1_764_979_200_000, venue)


@pytest.mark.parametrize("recorded", MODES)
@pytest.mark.parametrize("starting", MODES)
def test_a_start_of_another_kind_than_the_last_run_is_refused(
    tmp_path: Path, store: SqlStore, recorded: str, starting: str
) -> None:
    config = config_on(tmp_path)
    record(store, recorded, venue_of(config) if recorded == LIVE_RUN_MODE else None)
    if recorded == starting:
        check_run_kind(config, store, starting)  # the same kind goes on
        return
    with pytest.raises(ConfigError) as caught:
        check_run_kind(config, store, starting)
    message = " ".join(str(caught.value).split())
    assert "runtime.database_url" in message
    assert str(tmp_path / "state.db") in message  # the path
    assert f"holds the state of a {recorded} bot" in message  # the mode recorded
    assert "from /home/trader/my.toml" in message
    assert f"this start is {starting}" in message
    assert f"set another runtime.database_url for this {starting} bot" in message  # the fix


def test_a_database_no_bot_ran_on_takes_any_kind(tmp_path: Path, store: SqlStore) -> None:
    for mode in MODES:
        check_run_kind(config_on(tmp_path), store, mode)


def test_the_last_run_decides(tmp_path: Path, store: SqlStore) -> None:
    """A database where paper and live already ran (before the check existed) is the last
    run's: its risk memory is the one that run left."""
    config = config_on(tmp_path)
    record(store, PAPER_RUN_MODE)
    record(store, LIVE_RUN_MODE, venue_of(config))
    check_run_kind(config, store, LIVE_RUN_MODE)
    with pytest.raises(ConfigError, match="holds the state of a live bot"):
        check_run_kind(config, store, PAPER_RUN_MODE)


@pytest.mark.parametrize(
    ("exchange", "venue"),
    [
        ('name = "binanceusdm"\ndemo = false\n', "binanceusdm"),  # from demo to real money
        ('name = "bybit"\ndemo = true\n', "bybit (demo)"),
        (
            'name = "binanceusdm"\ndemo = false\napi_url = "http://127.0.0.1:8080"\n',
            "binanceusdm via http://127.0.0.1:8080",
        ),
    ],
    ids=["real", "another-exchange", "test-server"],
)
def test_a_live_start_on_another_venue_account_is_refused(
    tmp_path: Path, store: SqlStore, exchange: str, venue: str
) -> None:
    demo = config_on(tmp_path)  # the example's: binanceusdm, demo = true
    record(store, LIVE_RUN_MODE, venue_of(demo))
    check_run_kind(demo, store, LIVE_RUN_MODE)
    config = config_on(tmp_path, exchange=exchange)
    assert venue_of(config) == venue
    with pytest.raises(ConfigError) as caught:
        check_run_kind(config, store, LIVE_RUN_MODE)
    message = " ".join(str(caught.value).split())
    assert "holds the state of a live bot on binanceusdm (demo)" in message
    assert f"this start trades {venue}, another account" in message
    assert "set another runtime.database_url for this live bot" in message


def test_live_runs_recorded_without_their_venue_refuse_no_venue(
    tmp_path: Path, store: SqlStore
) -> None:
    """Runs recorded before the venue was (migration 0006) say nothing of it: not refused."""
    record(store, LIVE_RUN_MODE, None)
    check_run_kind(config_on(tmp_path, exchange='name = "bybit"\ndemo = false\n'), store, "live")


def test_the_venue_recorded_carries_no_credentials_of_the_url(tmp_path: Path) -> None:
    config = config_on(
        tmp_path,
        exchange='name = "binanceusdm"\ndemo = false\n'
        'api_url = "https://trader:Pa55word@gateway.example:8443/binance/"\n',
    )
    assert venue_of(config) == "binanceusdm via https://gateway.example:8443/binance"
