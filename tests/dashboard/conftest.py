"""A paper account built by a short replay of the bundled data, shared by the dashboard tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from tests.runtime.conftest import write_config

HOUR = 3_600_000
START = 1_748_822_400_000  # 2025-06-02T00:00Z
TOKEN = "test-operator-token-0123456789"


def replay(config_path: Path, ticks: int) -> int:
    """Run ``ticks`` hourly paper ticks on the bundled data; returns the time after the last."""
    config = load_config(config_path)
    store = open_store(config, create=True)
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    try:
        for _ in range(ticks):
            assert runner.tick() is not None
            clock.advance_to(clock.now_ms() + HOUR)
        return clock.now_ms()
    finally:
        paper.save()
        store.close()


@pytest.fixture(scope="session")
def paper_account_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("paper-account")
    replay(write_config(directory, contracts=2), 8)
    return directory


@pytest.fixture
def paper_account(paper_account_template: Path, tmp_path: Path) -> Path:
    """A private copy of the replayed account (tests may halt it); returns its config path."""
    directory = tmp_path / "account"
    shutil.copytree(paper_account_template, directory)
    return write_config(directory, contracts=2)
