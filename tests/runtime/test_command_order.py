"""`bot halt` / `bot resume` through the database: applied in the order posted, and a command
applied before the bot's first job leaves every loss limit working."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.enums import TradingState
from bot.domain.position import Balance
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config

START = 1_748_822_400_000  # 2025-06-02T00:00Z
HOUR_MS = 3_600_000


@pytest.fixture
def config(tmp_path: Path) -> BotConfig:
    return load_config(write_config(tmp_path, contracts=1))


@pytest.fixture
def store(config: BotConfig) -> Iterator[SqlStore]:
    s = open_store(config, create=True)
    yield s
    s.close()


def _state(store: SqlStore) -> TradingState:
    memory = store.load_risk_memory()
    assert memory is not None
    return memory.state


def test_a_halt_posted_after_a_resume_that_waits_is_not_lifted_by_it(
    config: BotConfig, store: SqlStore
) -> None:
    """A resume waits for a readable account (it measures the equity); a halt posted after it
    must not be applied first and then lifted by the older resume at the next job."""
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    assert runner.tick() is not None
    store.post_command("halt", json.dumps({"reason": "look at it"}), clock.now_ms())
    clock.advance_to(START + HOUR_MS)
    runner.guard()
    assert _state(store) is TradingState.HALTED
    working = paper.sim.fetch_balance

    def down() -> Balance:
        raise ConnectionError("the venue does not answer")

    paper.sim.fetch_balance = down  # type: ignore[method-assign]
    store.post_command("resume", "{}", clock.now_ms())
    flatten = json.dumps({"flatten": True, "reason": "venue down"})
    store.post_command("halt", flatten, clock.now_ms())
    clock.advance_to(START + 2 * HOUR_MS)
    runner.guard()
    assert _state(store) is TradingState.HALTED
    paper.sim.fetch_balance = working  # type: ignore[method-assign]
    for hours in (3, 4):
        clock.advance_to(START + hours * HOUR_MS)
        runner.guard()
        assert _state(store) is TradingState.HALTED  # the newest command was the halt
    assert store.posted_commands() == []


def test_a_resume_that_waits_holds_back_the_commands_after_it(
    config: BotConfig, store: SqlStore
) -> None:
    """Without a halt after it, the waiting resume keeps its place: the commands after it are
    applied after it, once the account can be read."""
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    assert runner.tick() is not None
    store.post_command("halt", json.dumps({"reason": "look at it"}), clock.now_ms())
    clock.advance_to(START + HOUR_MS)
    runner.guard()
    working = paper.sim.fetch_balance

    def down() -> Balance:
        raise ConnectionError("the venue does not answer")

    paper.sim.fetch_balance = down  # type: ignore[method-assign]
    store.post_command("resume", "{}", clock.now_ms())
    store.post_command("resume", json.dumps({"reason": "again"}), clock.now_ms())
    clock.advance_to(START + 2 * HOUR_MS)
    runner.guard()
    assert [kind for _, kind, _ in store.posted_commands()] == ["resume", "resume"]
    assert _state(store) is TradingState.HALTED
    paper.sim.fetch_balance = working  # type: ignore[method-assign]
    clock.advance_to(START + 3 * HOUR_MS)
    runner.guard()
    assert store.posted_commands() == []
    assert _state(store) is TradingState.ACTIVE


def test_a_halt_before_the_first_job_leaves_the_daily_loss_limit_working(
    config: BotConfig, store: SqlStore
) -> None:
    """A halt posted on a new database is applied before any risk memory exists: the memory it
    starts must not carry a day's start of 0, under which no daily loss ever counts."""
    clock = SimClock(START + HOUR_MS)
    store.post_command("halt", json.dumps({"reason": "not yet"}), clock.now_ms())
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    assert runner.tick() is not None
    assert _state(store) is TradingState.HALTED
    clock.advance_to(START + 2 * HOUR_MS)
    store.post_command("resume", "{}", clock.now_ms())
    runner.guard()
    assert _state(store) is TradingState.ACTIVE
    equity = paper.sim.fetch_balance().wallet
    clock.advance_to(START + 3 * HOUR_MS)
    paper.sim.book.wallet -= equity * Decimal("0.2")  # daily limit 5 %, drawdown limit 25 %
    runner.guard()
    memory = store.load_risk_memory()
    assert memory is not None
    assert memory.state is TradingState.HALTED, memory
    assert "daily loss" in memory.state_reason
