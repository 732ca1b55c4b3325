"""A bot that a supervisor restarts after each failed job still reaches ``reducing``.

``runtime.max_failures`` failed jobs in a row move the account to ``reducing``. The count used
to live in memory only, so a bot restarted after every failure never got there. Each failure
now records how many came in a row, the first job that succeeds records the end of the run, and
a start restores the count from the newest of the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import EventKind, TradingState
from bot.runtime.runner import Runner
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config

START = 1_748_822_400_000  # 2025-06-02T00:00Z
HOUR = 3_600_000
Start = Callable[[], tuple[Runner, SqlStore]]


class Broken(RuntimeError):
    pass


def broken() -> None:
    raise Broken("the job's dependency is down")


@pytest.fixture
def start_bot(tmp_path: Path) -> Iterator[Start]:
    """Build the paper bot anew over the same database, as each start of the process does."""
    config = load_config(write_config(tmp_path, contracts=1))
    clock = SimClock(START)
    stores: list[SqlStore] = []

    def start() -> tuple[Runner, SqlStore]:
        if stores:  # the previous process is gone
            stores[-1].close()
        clock.advance_to(clock.now_ms() + HOUR)
        stores.append(open_store(config, create=True))
        runner, _paper = build_paper(config, stores[-1], replay=config.data.dir, clock=clock)
        return runner, stores[-1]

    yield start
    if stores:
        stores[-1].close()


def state(store: SqlStore) -> TradingState:
    memory = store.load_risk_memory()
    assert memory is not None
    return memory.state


def test_each_restart_fails_once_and_the_limit_is_still_reached(start_bot: Start) -> None:
    runner, store = start_bot()
    assert runner.tick() is not None  # a healthy first run
    limit = runner.max_failures
    assert limit > 1, "with a limit of 1 the test would prove nothing"
    for n in range(1, limit + 1):  # one failed tick per run, then the supervisor restarts it
        runner, store = start_bot()
        assert runner.failures == n - 1  # restored, not reset
        runner.before_tick.append(broken)
        assert runner.tick() is None
        expected = TradingState.REDUCING if n == limit else TradingState.ACTIVE
        assert state(store) is expected, f"run {n}"
    [failed] = store.recent_events(1, kinds=(EventKind.TICK_FAILED,))
    assert failed.reason.endswith(f"({limit} failed tick jobs in a row)")


def test_a_job_that_succeeds_ends_the_run_across_restarts(start_bot: Start) -> None:
    runner, store = start_bot()
    runner.before_tick.append(broken)
    assert runner.tick() is None
    runner, store = start_bot()
    assert runner.failures == 1
    assert runner.tick() is not None  # the dependency is back
    assert runner.failures == 0
    [ok] = store.recent_events(1, kinds=(EventKind.JOBS_OK,))
    assert ok.reason == "tick done after 1 failed tick job(s) in a row"
    runner, store = start_bot()
    assert runner.failures == 0
    runner.before_tick.append(broken)
    assert runner.tick() is None
    assert state(store) is TradingState.ACTIVE  # one failure, not two in a row
