"""The synthetic crash in paper mode: the runner's hourly tick and its guard job (here every
five minutes, as the scheduler would run it) on recorded data through the paper exchange."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from bot.bootstrap import build_paper, open_store
from bot.clock import SimClock
from bot.config.loader import load_config
from bot.domain.enums import OrderPurpose
from bot.domain.orders import Fill, Order
from bot.ports.store import DecisionRecord, RiskEvent
from tests.crash.data import CRASH, CRASH_DAY, DAY, FIVE_MIN, HOUR, write_config, write_data

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
START = CRASH_DAY  # 2025-01-10T00:00Z: a week of warm-up before it


@dataclass(frozen=True)
class PaperRun:
    equity: list[tuple[int, Decimal]]
    events: list[RiskEvent]
    fills: list[Fill]
    orders: dict[str, Order]
    decisions: list[DecisionRecord]


def run_paper(tmp_path: Path, crash: str, *, eth: bool, hours: int) -> PaperRun:
    data = write_data(tmp_path / "data", crash, eth=eth)
    config = load_config(write_config(tmp_path, data, eth=eth))
    store = open_store(config, create=True)
    clock = SimClock(START)
    runner, paper = build_paper(config, store, replay=data, clock=clock)
    equity: list[tuple[int, Decimal]] = []
    try:
        for _ in range(hours):
            assert runner.tick() is not None
            equity.append((clock.now_ms(), paper.sim.equity()))
            for _ in range(HOUR // FIVE_MIN):
                clock.advance_to(clock.now_ms() + FIVE_MIN)
                if clock.now_ms() % HOUR:
                    runner.guard()
                    equity.append((clock.now_ms(), paper.sim.equity()))
        out = PaperRun(
            equity,
            store.recent_events(10_000),
            list(paper.sim.fills),
            dict(paper.sim.orders),
            store.recent_decisions(10_000),
        )
    finally:
        paper.save()
        store.close()
    return out


@pytest.mark.slow
def test_paper_crash_inside_a_candle_keeps_the_daily_limit_and_the_cooldown(
    tmp_path: Path,
) -> None:
    out = run_paper(tmp_path, "inside", eth=False, hours=30)
    fills = out.fills
    orders = out.orders
    day = [e for t, e in out.equity if CRASH_DAY <= t < CRASH_DAY + DAY]
    start = day[0]
    stops = [f for f in fills if f.purpose is OrderPurpose.STOP_LOSS]
    assert stops
    slippage = sum(
        (abs((orders[f.client_id].trigger_price or f.price) - f.price) * f.qty for f in stops),
        Decimal(0),
    )
    assert start - min(day) <= Decimal("0.05") * start + slippage + Decimal("0.01")
    stop_ts = min(f.timestamp_ms for f in stops)
    assert CRASH <= stop_ts <= CRASH + FIVE_MIN
    entries = [
        f.timestamp_ms
        for f in fills
        if f.purpose is OrderPurpose.ENTRY and f.timestamp_ms > stop_ts
    ]
    assert entries == []  # 30 hours from midnight: the 24 h cooldown has not ended
    reasons = [r.decision.reason for r in out.decisions if r.ts_ms > stop_ts]
    assert reasons
    assert all("cooldown until 2025-01-11" in reason for reason in reasons)


@pytest.mark.slow
def test_paper_guard_acts_within_one_candle(tmp_path: Path) -> None:
    out = run_paper(tmp_path, "gap", eth=True, hours=14)
    halts = [e for e in out.events if e.kind == "state" and "daily loss" in e.reason]
    assert halts
    assert CRASH < halts[0].ts_ms <= CRASH + FIVE_MIN
    closes = [f for f in out.fills if f.symbol == ETH and f.purpose is OrderPurpose.CLOSE]
    assert closes
    assert closes[0].timestamp_ms == halts[0].ts_ms
