"""The simulation's remembered lookups answer as a fresh search would.

TimeCursor answers exactly what numpy.searchsorted(side="right") answers, whatever the order of
the questions (forward by steady steps as in the dry run, backwards, jumps, across gaps, as a
paper account's clock may move); so do the trigger series and the historical market built on
it, and they follow new arrays or a replaced history."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.backtest.replay import _EquityFloor
from bot.domain.enums import TradingState
from bot.instruments import load_instruments
from bot.marketdata.candles import Candles, FundingSeries
from bot.ports.market import StatisticsSpec, WindowStatistics
from bot.risk.guard import equity_floor
from bot.risk.limits import RiskLimits
from bot.risk.state import initial_memory
from bot.sim.account_watch import maintenance_one, maintenance_vec
from bot.sim.cursor import TimeCursor
from bot.sim.history import ContractHistory, HistoricalMarket, _segment_starts
from bot.sim.triggers import TriggerSeries, to_decimal

STEP = 60_000


def _grid_with_gaps(starts: list[int], lengths: list[int]) -> np.ndarray:
    """Candle open times on a STEP grid: runs of ``lengths`` candles, each run ``starts`` steps
    after the previous one ended (a gap when > 0)."""
    out: list[int] = []
    t = 1_700_000_000_000
    for skip, n in zip(starts, lengths, strict=False):
        t += skip * STEP
        out.extend(t + k * STEP for k in range(n))
        t += n * STEP
    a = np.array(out, dtype=np.int64)
    a.setflags(write=False)
    return a


@settings(max_examples=300)
@given(
    st.lists(st.integers(0, 5), min_size=0, max_size=6),
    st.lists(st.integers(0, 30), min_size=0, max_size=6),
    st.lists(st.integers(-40 * STEP, 200 * STEP), min_size=1, max_size=40),
)
def test_any_sequence_of_times_matches_searchsorted(
    skips: list[int], lengths: list[int], offsets: list[int]
) -> None:
    ts = _grid_with_gaps(skips, lengths)
    base = 1_700_000_000_000
    cursor = TimeCursor(ts, STEP)
    for off in offsets:
        x = base + off
        assert cursor.right(x) == int(np.searchsorted(ts, x, side="right")), x


def test_forward_steps_on_and_off_the_grid_and_over_gaps() -> None:
    ts = _grid_with_gaps([0, 3, 0, 100], [120, 60, 1, 200])
    cursor = TimeCursor(ts, STEP)
    t0 = int(ts[0])
    times = [t0 - 1, t0, t0 + 1]
    times += [t0 + k * 3_600_000 for k in range(1, 12)]  # hourly, through both gaps
    times += [t0 + k * 3_600_000 + 59_999 for k in range(12)]  # off the grid
    times += [t0 + 10 * 3_600_000, t0, int(ts[-1]), int(ts[-1]) + 1, int(ts[-1]) + 10**9]
    for x in times:
        assert cursor.right(x) == int(np.searchsorted(ts, x, side="right")), x


def test_empty_and_single_time_columns() -> None:
    empty = TimeCursor(np.zeros(0, dtype=np.int64), STEP)
    assert [empty.right(x) for x in (-5, 0, 5)] == [0, 0, 0]
    one = TimeCursor(np.array([100], dtype=np.int64), STEP)
    assert [one.right(x) for x in (99, 100, 101, 99, 10**12)] == [0, 1, 1, 0, 1]


def test_a_step_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="step must be positive"):
        TimeCursor(np.zeros(1, dtype=np.int64), 0)


def _series(n: int, seed: int) -> TriggerSeries:
    rng = np.random.default_rng(seed)
    ts = _grid_with_gaps([0, 2, 0], [n // 2, n // 4, n - n // 2 - n // 4])
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    high = close + rng.uniform(0, 1, n)
    low = close - rng.uniform(0, 1, n)
    return TriggerSeries(ts, close, high, low, close, STEP, "mark")


def test_trigger_series_lookups_match_searchsorted() -> None:
    s = _series(300, 1)
    t0 = int(s.ts[0])
    for x in [t0 - STEP, t0, t0 + 7 * STEP + 5, t0 + 3_600_000, t0 + 3 * STEP, t0 + 10**9]:
        assert s.closed_by(x) == int(np.searchsorted(s.ts, x - STEP, side="right"))
        assert s.opened_before(x) == int(np.searchsorted(s.ts, x, side="left"))


def test_planned_windows_give_the_extremes_of_any_window_asked() -> None:
    s = _series(300, 2)
    bounds = np.array([0, 0, 17, 60, 60, 61, 200, 250], dtype=np.int64)
    s.plan_windows(bounds)
    asked = [(0, 17), (17, 60), (60, 61), (61, 200), (200, 250)]  # the planned ones
    asked += [(5, 17), (17, 59), (0, 300), (299, 300), (61, 200), (3, 4)]  # and others
    for i0, i1 in asked:
        want = (float(s.low[i0:i1].min()), float(s.high[i0:i1].max()))
        assert s.extremes(i0, i1) == want, (i0, i1)


def test_extremes_follow_new_arrays() -> None:
    """A series given new price arrays answers from them, not from what it remembered."""
    s = _series(120, 3)
    s.plan_windows(np.array([0, 60, 120], dtype=np.int64))
    assert s.extremes(0, 60) == (float(s.low[:60].min()), float(s.high[:60].max()))
    assert s.extremes(60, 100) == (float(s.low[60:100].min()), float(s.high[60:100].max()))
    s.low = s.low - 50.0
    s.high = s.high + 50.0
    assert s.extremes(0, 60) == (float(s.low[:60].min()), float(s.high[:60].max()))
    assert s.extremes(60, 100) == (float(s.low[60:100].min()), float(s.high[60:100].max()))
    s.ts = s.ts + 10 * STEP
    x = int(s.ts[5]) + STEP
    assert s.closed_by(x) == int(np.searchsorted(s.ts, x - STEP, side="right"))


def test_bad_window_bounds_are_refused() -> None:
    s = _series(50, 4)
    with pytest.raises(ValueError, match="bounds must be non-decreasing"):
        s.plan_windows(np.array([0, 30, 20], dtype=np.int64))
    with pytest.raises(ValueError, match="within the 50 bars"):
        s.plan_windows(np.array([0, 51], dtype=np.int64))


def test_historical_market_reads_match_a_fresh_search_in_any_order() -> None:
    """The market's remembered lookups (last price, candles, funding) give what a market that
    never saw an earlier question gives, for times forward, backward and far apart, and follow
    a contract's history when it is replaced."""
    hist = _history(3_000, seed=5)
    market = HistoricalMarket({"X": hist})
    t0 = int(hist.last.ts[0])
    times = [t0 + k * 3_600_000 for k in range(1, 40)]
    times += [t0 + 5 * 3_600_000 + 1, t0 + 90_000, t0, t0 - 1, t0 + 10**10, t0 + 2 * 3_600_000]
    for now in times:
        fresh = HistoricalMarket({"X": hist})
        assert market.last_price("X", now) == fresh.last_price("X", now)
        got = market.closed_candles("X", 3_600_000, 5, now)
        want = fresh.closed_candles("X", 3_600_000, 5, now)
        assert got.ts.tolist() == want.ts.tolist()
        assert got.close.tolist() == want.close.tolist()
        assert market.funding("X", now, 3) == fresh.funding("X", now, 3)
    now = times[10]
    before = market.last_price("X", now)
    other = _history(3_000, seed=6)
    market.contracts["X"] = other
    after = market.last_price("X", now)
    assert after == HistoricalMarket({"X": other}).last_price("X", now)
    assert after != before


def test_window_statistics_follow_a_replaced_history() -> None:
    """Precomputed statistics are read from the contract's current history: the market
    remembers the arrays of the last one read, never across a replaced history."""
    spec = StatisticsSpec("close_to_close", 20, 0.94, 14, 30)
    market = HistoricalMarket({"X": _history(3_000, seed=8)})
    market.precompute(spec)
    now = int(market.contracts["X"].decision.ts[40]) + 3_600_000
    first = market.closed_candles("X", 3_600_000, 30, now).statistics
    assert first is not None
    assert market.closed_candles("X", 3_600_000, 30, now).statistics == first
    other = _history(3_000, seed=9)
    market.contracts["X"] = other
    market.precompute(spec)
    second = market.closed_candles("X", 3_600_000, 30, now).statistics
    vol, atr, traded = other.statistics[spec]
    end = int(np.searchsorted(other.decision.ts, now - 3_600_000, side="right"))
    assert second == WindowStatistics(spec, float(vol[end]), float(atr[end]), float(traded[end]))
    assert second != first


def _history(n: int, seed: int) -> ContractHistory:
    rng = np.random.default_rng(seed)
    ts = np.arange(n, dtype=np.int64) * STEP + 1_700_000_000_000 - (1_700_000_000_000 % 3_600_000)
    ts = np.delete(ts, np.arange(700, 760))  # a gap of an hour
    close = 100 + np.cumsum(rng.normal(0, 1, len(ts)))
    last = Candles(ts, close, close + 1, close - 1, close, close * 0 + 5, STEP, "X", "trade", "t")
    decision = last.resample(3_600_000)
    f_ts = np.arange(int(ts[0]), int(ts[-1]), 8 * 3_600_000, dtype=np.int64)
    funding = FundingSeries(f_ts, rng.normal(0, 1e-4, len(f_ts)), "X", "t")
    return ContractHistory("X", decision, _segment_starts(decision), last, last, funding)


_SPECS = load_instruments("binanceusdm")


@settings(max_examples=300)
@given(
    st.sampled_from(sorted(_SPECS)),
    st.floats(min_value=-1e10, max_value=1e10, allow_nan=False),
)
def test_one_maintenance_margin_equals_the_vectorised_one_to_the_bit(
    symbol: str, notional: float
) -> None:
    inst = _SPECS[symbol]
    floors = [float(b.notional_floor) for b in inst.brackets]  # exactly on a bracket's edge
    for x in (notional, float(round(notional)), 0.0, *floors, *(-f for f in floors)):
        one = maintenance_one(inst, x)
        vec = float(maintenance_vec(inst, np.array([x]))[0])
        assert one == vec or (one != one and vec != vec)


def test_decimal_closes_are_the_exact_decimals_and_shared_with_the_trigger_series() -> None:
    hist = _history(1_000, seed=7)
    market = HistoricalMarket({"X": hist})
    series = market.trigger_series()["X"]
    for i in [0, 5, 5, 899, 3, 0]:
        assert series.close_at(i) == to_decimal(hist.last.close[i])
        assert str(series.close_at(i)) == repr(float(hist.last.close[i]))
    now = int(hist.last.ts[42]) + STEP
    last = market.last_price("X", now)
    assert last is not None
    assert series.close_at(42) is last[0]  # one conversion for both
    c = hist.last.close
    fresh = TriggerSeries(hist.last.ts, c, c, c, c, STEP, "last")
    assert fresh.close_at(7) == to_decimal(hist.last.close[7])
    fresh.close = hist.last.close[::-1].copy()
    assert fresh.close_at(7) == to_decimal(fresh.close[7])


_LIMITS = RiskLimits(
    max_leverage_per_contract=Decimal(5),
    max_gross_leverage=Decimal(6),
    max_notional_per_contract=Decimal(100000),
    daily_loss=Decimal("0.05"),
    max_drawdown=Decimal("0.25"),
    stale_data_ms=7_200_000,
    max_orders_per_minute=60,
)


def test_the_replays_guard_floor_follows_every_new_risk_memory_and_limits() -> None:
    """The replay computes the guard's floor again whenever the store holds another memory or
    the limits are other ones, and only then."""
    floor = _EquityFloor()
    mem = initial_memory(Decimal(10000), 0)
    assert floor(None, _LIMITS) is None
    first = floor(mem, _LIMITS)
    assert first == equity_floor(mem, _LIMITS) == Decimal(9500)
    assert floor(mem, _LIMITS) is first
    richer = replace(mem, peak_equity=Decimal(20000), day_start_equity=Decimal(20000))
    assert floor(richer, _LIMITS) == equity_floor(richer, _LIMITS) == Decimal(19000)
    reducing = replace(
        richer, state=TradingState.REDUCING, state_reason="daily loss 5.00% >= limit 5.00%"
    )
    assert floor(reducing, _LIMITS) == Decimal(19000)  # a daily loss halts from reducing too
    only_reduces = replace(_LIMITS, on_daily_loss="reducing")
    assert floor(reducing, only_reduces) == Decimal(15000)  # only the drawdown floor is left
    tighter = replace(only_reduces, max_drawdown=Decimal("0.1"))
    assert floor(reducing, tighter) == equity_floor(reducing, tighter) == Decimal(18000)
    assert floor(replace(reducing, state=TradingState.HALTED), tighter) is None
