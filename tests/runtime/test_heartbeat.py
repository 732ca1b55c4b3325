"""Every job the runner completes replaces the heartbeat in the state database (the job's name
and the runner's clock); a job that raises leaves it as it was."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import LiveClock, SimClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.enums import EventKind, TradingState
from bot.ports.store import Heartbeat
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config

START = 1_748_822_400_000  # 2025-06-02T00:00Z
MINUTE = 60_000


class Broken(RuntimeError):
    pass


def broken() -> None:
    raise Broken("the venue does not answer")


@pytest.fixture
def config(tmp_path: Path) -> BotConfig:
    return load_config(write_config(tmp_path, contracts=1))


@pytest.fixture
def store(config: BotConfig) -> Iterator[SqlStore]:
    s = open_store(config, create=True)
    yield s
    s.close()


def test_each_completed_job_records_the_heartbeat(config: BotConfig, store: SqlStore) -> None:
    clock = SimClock(START)
    runner, _paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    assert store.last_heartbeat() is None
    assert runner.tick() is not None
    assert store.last_heartbeat() == Heartbeat(ts_ms=START, job="tick")
    clock.advance_to(START + MINUTE)
    runner.guard()
    assert store.last_heartbeat() == Heartbeat(ts_ms=START + MINUTE, job="guard")
    clock.advance_to(START + 2 * MINUTE)
    runner.rollover()
    assert store.last_heartbeat() == Heartbeat(ts_ms=START + 2 * MINUTE, job="rollover")
    clock.advance_to(START + 3 * MINUTE)
    assert runner.before_funding({"BTC/USDT:USDT"}) is not None
    assert store.last_heartbeat() == Heartbeat(ts_ms=START + 3 * MINUTE, job="funding")


def test_a_failing_job_does_not_refresh_it(config: BotConfig, store: SqlStore) -> None:
    clock = SimClock(START)
    runner, _paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    runner.guard()
    assert store.last_heartbeat() == Heartbeat(ts_ms=START, job="guard")
    runner.before_job.append(broken)
    clock.advance_to(START + MINUTE)
    runner.guard()
    clock.advance_to(START + 2 * MINUTE)
    assert runner.tick() is None
    # the failures are recorded as such; the heartbeat still says when a job last completed
    assert len(store.recent_events(10, kinds=(EventKind.TICK_FAILED,))) == 2
    assert store.last_heartbeat() == Heartbeat(ts_ms=START, job="guard")
    runner.before_job.remove(broken)
    clock.advance_to(START + 3 * MINUTE)
    runner.guard()
    assert store.last_heartbeat() == Heartbeat(ts_ms=START + 3 * MINUTE, job="guard")


def test_a_heartbeat_that_cannot_be_written_does_not_undo_the_job(
    config: BotConfig, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = SimClock(START)
    runner, _paper = build_paper(config, store, replay=config.data.dir, clock=clock)

    def full_disk(_heartbeat: Heartbeat) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(store, "record_heartbeat", full_disk)
    assert runner.tick() is not None
    assert runner.failures == 0
    assert store.recent_events(10, kinds=(EventKind.TICK_FAILED,)) == []


def test_a_replay_stamps_the_replayed_time(config: BotConfig, store: SqlStore) -> None:
    """A fast replay records its jobs at the replayed clock's time, as its ticks."""
    runner, _paper = build_paper(config, store, replay=config.data.dir, speed=3600)
    before = runner.clock.now_ms()
    assert runner.tick() is not None
    after = runner.clock.now_ms()
    heartbeat = store.last_heartbeat()
    equity = store.latest_equity()
    assert heartbeat is not None
    assert equity is not None
    assert heartbeat.job == "tick"
    assert before <= equity.ts_ms <= heartbeat.ts_ms <= after
    assert heartbeat.ts_ms < LiveClock().now_ms() - 365 * 86_400_000  # 2025's data, not today


def test_a_halt_at_the_rollover_closes_the_positions_in_that_job(
    config: BotConfig, store: SqlStore
) -> None:
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    assert runner.tick() is not None
    held = paper.sim.fetch_positions(["BTC/USDT:USDT"])
    assert held, "the first tick opens a position"
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(replace(memory, peak_equity=memory.peak_equity * 2))  # 50 % down
    clock.advance_to(START + MINUTE)
    runner.rollover()
    after = store.load_risk_memory()
    assert after is not None
    assert after.state is TradingState.HALTED
    # Before: the halt was recorded and the positions waited for the next guard job.
    assert paper.sim.fetch_positions(["BTC/USDT:USDT"]) == {}
