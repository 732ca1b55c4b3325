"""The pre-funding hold is a window, not one tick: from the pre-funding tick's time until the
settlement (both on the venue's clock), every decision tick holds the contracts about to pay.
A tick of the policy's cadence between the pre-funding tick and the settlement (a 1m or 2m
timeframe; before, on a host clock ahead of the venue, the tick after the close ran before a
settlement on the hour) or a start's tick there grew again the position it had held."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock, ms_to_datetime
from bot.config.loader import load_config
from bot.config.models import BotConfig
from bot.domain.market import FundingInfo
from bot.engine.tick import TickResult
from bot.errors import TransientExchangeError
from bot.ports.market import CandleWindow, MarketDataPort
from bot.runtime.runner import Runner
from bot.runtime.scheduler import add_live_jobs, new_scheduler
from bot.sim.paper import PaperExchange
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


# --- a start inside the window -----------------------------------------------------------------

SETTLES = START + 120 * MINUTE  # BTC's next funding settlement (longs pay)
LEAD_S = 120


class PayingMarket:
    """The engine's market data, BTC's funding (longs pay) settling at :data:`SETTLES`; its
    first ``unreadable`` funding reads fail (a venue's hiccup)."""

    def __init__(self, market: MarketDataPort, unreadable: int = 0) -> None:
        self.market, self.unreadable = market, unreadable

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        return self.market.closed_candles(symbol, tf_ms, count, now_ms)

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        if self.unreadable:
            self.unreadable -= 1
            raise TransientExchangeError("503 Service Unavailable")
        return FundingInfo(Decimal("0.0001"), Decimal(8), SETTLES)

    def last_price(self, symbol: str, now_ms: int) -> tuple[Decimal, int] | None:
        return self.market.last_price(symbol, now_ms)


@dataclass
class Started:
    """A bot started again: its runner, paper account, clock and jobs, and its ticks' results."""

    runner: Runner
    paper: PaperExchange
    clock: SimClock
    sched: BackgroundScheduler
    ticks: list[TickResult]


def started_at(config: BotConfig, store: SqlStore, at_ms: int, *, unreadable: int = 0) -> Started:
    """A bot that went long BTC at START (its deposit doubled since: the next decision grows the
    position), started again at ``at_ms``: its live jobs planned, the start's job run (what the
    scheduler runs first)."""
    clock = SimClock(START)
    first, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    first.engine.market = PayingMarket(first.engine.market)
    assert first.tick() is not None
    paper.sim.book.wallet *= 2
    paper.save()
    clock = SimClock(at_ms)
    runner, paper = build_paper(config, store, replay=config.data.dir, clock=clock)
    runner.engine.market = PayingMarket(runner.engine.market, unreadable)
    ticks: list[TickResult] = []
    runner.on_tick.append(ticks.append)
    sched = new_scheduler(grace_seconds=120)
    add_live_jobs(
        sched,
        runner,
        clock,
        tf_ms=60 * MINUTE,
        guard_seconds=60,
        funding_lead_seconds=LEAD_S,
        stop=threading.Event(),
    )
    sched.get_job("startup-tick").func()
    return Started(runner, paper, clock, sched, ticks)


def test_a_bot_started_inside_the_pre_funding_window_holds_the_paying_contract(
    config: BotConfig, store: SqlStore
) -> None:
    """Started 60 s before the settlement (a restart after a crash, a deploy), lead 120 s: the
    holds are in memory only, and the planner planned only a settlement whose pre-funding tick
    was still ahead, after the start's tick: nothing was held, and the start's tick grew the
    long about to pay. The start's job plans the settlements first, and one whose window has
    begun is a hold from then on (the start's tick is its pre-funding tick: none of its own)."""
    bot = started_at(config, store, SETTLES - MINUTE)
    [tick] = bot.ticks
    [decision] = tick.decisions
    assert not decision.allow_increase
    assert "pre-funding tick: no new exposure before the settlement" in decision.reason
    assert tick.orders_sent == 0
    assert bot.sched.get_job(f"funding-{SETTLES}") is None  # (the start's tick was it)
    qty = bot.paper.fetch_positions([BTC])[BTC].qty
    bot.clock.advance_to(SETTLES - MINUTE // 2)
    later = bot.runner.tick()  # a decision tick 30 s before the settlement: held too
    assert later is not None
    assert not later.decisions[0].allow_increase
    assert bot.paper.fetch_positions([BTC])[BTC].qty == qty


def test_a_bot_started_before_the_window_grows_and_plans_the_pre_funding_tick(
    config: BotConfig, store: SqlStore
) -> None:
    bot = started_at(config, store, SETTLES - 10 * MINUTE)
    [tick] = bot.ticks
    assert tick.decisions[0].allow_increase
    assert tick.orders_sent >= 1  # grown: the settlement is 10 minutes away
    job = bot.sched.get_job(f"funding-{SETTLES}")
    assert job is not None
    assert job.trigger.run_date == ms_to_datetime(SETTLES - LEAD_S * 1000)


def test_a_start_whose_funding_cannot_be_read_still_ticks(
    config: BotConfig, store: SqlStore
) -> None:
    """The start's planning reads the venue: a read that fails costs the start nothing (its
    tick runs and decides, as before the start planned anything; the planner tries again)."""
    bot = started_at(config, store, SETTLES - MINUTE, unreadable=1)
    [tick] = bot.ticks
    assert tick.decisions[0].allow_increase  # (nothing known to hold: as before)
    assert tick.orders_sent >= 1
    assert bot.sched.get_job(f"funding-{SETTLES}") is None
    assert bot.sched.get_job("funding-planner") is not None
