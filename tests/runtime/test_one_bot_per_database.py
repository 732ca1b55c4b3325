"""Two ``bot run`` on one state database would trade one account twice from the same records
(the same risk memory, paper account and client-id sequence): the second is refused at start
with one clear line, before it opens anything, and the first goes on untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlmodel import Session, select

from bot.config.loader import load_config
from bot.store.sql import SqlStore
from bot.store.tables import RunRow
from tests.runtime.conftest import write_config
from tests.runtime.test_crash_only import (
    DATA,
    EXIT_TIMEOUT_S,
    START_TIMEOUT_S,
    bot_command,
    bot_process,
    clean_env,
    wait_for_text,
)

pytestmark = pytest.mark.slow


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bot_command(config, *args),
        capture_output=True,
        text=True,
        env={**clean_env(), "NO_COLOR": "1", "COLUMNS": "400"},
        timeout=START_TIMEOUT_S + EXIT_TIMEOUT_S,
        check=False,
    )


def test_a_second_bot_on_the_same_database_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, contracts=1)
    url = load_config(config).runtime.database_url
    log = tmp_path / "first.log"
    # A slow replay (an hour of data every 10 s): the first bot is alive for the whole test.
    with bot_process(config, log, "--replay", str(DATA), "--speed", "360") as first:
        wait_for_text(first, log, "tick done")
        second = run(config, "--replay", str(DATA), "--once")
        assert second.returncode == 2, second.stdout + second.stderr
        err = " ".join(second.stderr.split())
        assert "error: another bot is running on the state database" in err
        assert f"(process {first.pid})" in err
        assert "Traceback" not in second.stderr
        # Nor may the schema be migrated under it.
        upgrade = subprocess.run(
            [*bot_command(config)[:3], "db", "upgrade", "--config", str(config)],
            capture_output=True,
            text=True,
            env={**clean_env(), "NO_COLOR": "1", "COLUMNS": "400"},
            timeout=START_TIMEOUT_S,
            check=False,
        )
        assert upgrade.returncode == 2, upgrade.stdout + upgrade.stderr
        assert "another bot is running" in upgrade.stderr
        assert first.poll() is None, "the first bot stopped"
    # The refused start left no trace in the store: one run, the first one.
    store = SqlStore.open(url)
    try:
        with Session(store.engine) as session:
            assert len(session.exec(select(RunRow)).all()) == 1
    finally:
        store.close()
    # Once the first bot is gone (killed here), the next start gets the database.
    again = run(config, "--replay", str(DATA), "--once")
    assert again.returncode == 0, again.stderr[-3000:]
