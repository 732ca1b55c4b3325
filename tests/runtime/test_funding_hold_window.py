"""The pre-funding hold is a window, not one tick: from the pre-funding tick's time until the
settlement (both on the venue's clock), every decision tick holds the contracts about to pay.
A tick of the policy's cadence between the pre-funding tick and the settlement (a 1m or 2m
timeframe; before, on a host clock ahead of the venue, the tick after the close ran before a
settlement on the hour) or a start's tick there grew again the position it had held."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.store.sql import SqlStore
from tests.runtime.conftest import write_config

START = 1_748_822_400_000  # 2025-06-02T00:00Z
MINUTE = 60_000
BTC = "BTC/USDT:USDT"


@pytest.fixture
def config(tmp_path: Path) -> BotConfig:
    return load_config(write_config(tmp_path, contracts=1))


@pytest.fixture
def store(config: BotConfig) -> Iterator[SqlStore]:
    s = open_store(config, create=True)
    yield s
    s.close()


def test_every_decision_tick_within_a_planned_hold_takes_no_increase(
    config: BotConfig, store: SqlStore
) -> None:
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    # The planner planned BTC's pre-funding tick 2 minutes before a settlement 1 minute away.
    runner.hold_for_funding(START + MINUTE, START - MINUTE, {BTC})
    held = runner.tick()  # the regular tick, not the pre-funding one
    assert held is not None
    [decision] = held.decisions
    assert not decision.allow_increase
    assert "pre-funding tick: no new exposure before the settlement" in decision.reason
    assert held.orders_sent == 0
    assert BTC not in paper.fetch_positions([BTC])
    clock.advance_to(START + MINUTE)  # settled: the hold is over
    free = runner.tick()
    assert free is not None
    assert free.orders_sent >= 1
    assert paper.fetch_positions([BTC])[BTC].qty > 0


def test_a_hold_planned_ahead_holds_nothing_before_its_time(
    config: BotConfig, store: SqlStore
) -> None:
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    runner.hold_for_funding(START + 10 * MINUTE, START + 8 * MINUTE, {BTC})
    result = runner.tick()
    assert result is not None
    assert result.orders_sent >= 1
    assert paper.fetch_positions([BTC])[BTC].qty > 0
