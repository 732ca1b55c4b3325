"""A contract whose decision candles have a gap gets no decision until its volatility window
refills (a window never spans a gap, by design): the engine records it once when it starts,
naming the gap, the window it needs and until when, and once when decisions resume, not once
per tick; a restarted engine does not record it again. Before, paper and live trading recorded
nothing: the trader saw a contract not trading and no reason."""

from __future__ import annotations

from decimal import Decimal as D
from typing import cast

import numpy as np

from bot.clock import ms_to_datetime
from bot.domain.enums import EventKind, OrderPurpose
from bot.domain.instrument import Instrument
from bot.engine.market import snapshot_window
from bot.engine.undecided import open_undecided
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.exchange.ccxt_market import CcxtMarketData
from bot.exchange.mapping import Candle
from bot.marketdata.candles import Candles
from bot.ports.market import CandleWindow
from bot.ports.store import RiskEvent
from bot.sim.history import ContractHistory, HistoricalMarket, _segment_starts
from tests.conftest import T0
from tests.unit.test_engine import BTC, HOUR, FakeMarket, build

GAP_FROM = T0 + 5 * HOUR  # the first missing candle
GAP_TO = T0 + 8 * HOUR  # the first candle after the gap (three hourly candles missing)


class GappedMarket(FakeMarket):
    """Hourly candles on both sides of T0, with the three candles from GAP_FROM missing; the
    window is cut at the gap as the real sources cut it (``gap_before`` says where)."""

    def __init__(self) -> None:
        super().__init__(n=800)
        self.ts = self.ts + 400 * HOUR  # 400 candles before T0, 400 after
        keep = (self.ts < GAP_FROM) | (self.ts >= GAP_TO)
        for name in ("ts", "open", "high", "low", "close"):
            setattr(self, name, getattr(self, name)[keep])

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        end = int(np.searchsorted(self.ts, now_ms - tf_ms, side="right"))
        start = max(0, end - count)
        breaks = np.flatnonzero(np.diff(self.ts[:end]) != tf_ms) + 1
        gap = None
        if len(breaks) and breaks[-1] > start:
            start = int(breaks[-1])
            gap = (int(self.ts[start - 1]) + tf_ms, int(self.ts[start]))
        sl = slice(start, end)
        return CandleWindow(
            self.ts[sl],
            self.open[sl],
            self.high[sl],
            self.low[sl],
            self.close[sl],
            tf_ms,
            gap_before=gap,
        )

    def last_price(self, symbol: str, now_ms: int) -> tuple[D, int] | None:
        i = int(np.searchsorted(self.ts, now_ms - HOUR, side="right")) - 1
        return D(f"{self.close[i]:.1f}"), int(self.ts[i]) + HOUR


def _of(store_events: list[RiskEvent], kind: EventKind) -> list[RiskEvent]:
    return [e for e in store_events if e.kind is kind]


def test_a_gap_is_recorded_once_when_it_starts_and_once_when_decisions_resume(
    instruments: dict[str, Instrument],
) -> None:
    market = GappedMarket()
    engine, ex, store = build(instruments, market)
    clock = engine.clock
    assert engine.tick().decisions  # before the gap: decided, a position opened
    held = ex.fetch_positions([BTC])[BTC].qty
    assert held > 0
    key, needed = snapshot_window(engine.policy)
    resume = GAP_TO + needed * HOUR  # the window holds `needed` candles after the gap then
    hour = GAP_TO + HOUR  # the first candle after the gap has closed
    ticks = 0
    while hour < resume:
        clock.advance_to(hour)  # type: ignore[attr-defined]
        result = engine.tick()
        assert result.decisions == [], hour
        ticks += 1
        hour += HOUR
    assert ticks > 100
    # held with its stop through the whole stretch
    assert ex.fetch_positions([BTC])[BTC].qty == held
    assert [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    [started] = _of(store.events, EventKind.NO_DECISION)  # once, not once per tick
    assert started.symbol == BTC
    assert started.ts_ms == GAP_TO + HOUR
    assert f"needs {needed} candles after it ({key})" in started.reason
    assert not _of(store.events, EventKind.DECIDING)
    assert open_undecided(store.events)[BTC].since_ms == GAP_TO + HOUR
    clock.advance_to(resume)  # type: ignore[attr-defined]
    assert engine.tick().decisions  # the window is full again
    [resumed] = _of(store.events, EventKind.DECIDING)
    assert resumed.symbol == BTC
    assert "decisions resume" in resumed.reason
    assert open_undecided(store.events) == {}
    clock.advance_to(resume + HOUR)  # type: ignore[attr-defined]
    engine.tick()
    assert len(_of(store.events, EventKind.NO_DECISION)) == 1
    assert len(_of(store.events, EventKind.DECIDING)) == 1


def test_the_reason_names_the_gap_the_window_and_until_when(
    instruments: dict[str, Instrument],
) -> None:
    market = GappedMarket()
    engine, _ex, store = build(instruments, market)
    engine.clock.advance_to(GAP_TO + 2 * HOUR)  # type: ignore[attr-defined]
    engine.tick()
    [started] = _of(store.events, EventKind.NO_DECISION)
    _key, needed = snapshot_window(engine.policy)
    gap_from = _minute(GAP_FROM)
    gap_to = _minute(GAP_TO)
    until = _minute(GAP_TO + needed * HOUR)
    assert f"gap in the 1h candles from {gap_from} to {gap_to}" in started.reason
    assert f"no decision until {until}" in started.reason


def test_a_restart_in_the_stretch_does_not_record_it_again(
    instruments: dict[str, Instrument],
) -> None:
    market = GappedMarket()
    engine, ex, store = build(instruments, market)
    engine.clock.advance_to(GAP_TO + 2 * HOUR)  # type: ignore[attr-defined]
    engine.tick()
    assert len(_of(store.events, EventKind.NO_DECISION)) == 1
    again = type(engine)(
        clock=engine.clock,
        exchange=ex,
        market=market,
        store=store,
        policy=engine.policy,
        contracts=engine.contracts,
        limits=engine.limits,
        account="t",
    )
    engine.clock.advance_to(GAP_TO + 3 * HOUR)  # type: ignore[attr-defined]
    again.tick()
    assert len(_of(store.events, EventKind.NO_DECISION)) == 1


def test_a_contract_younger_than_the_window_says_so(instruments: dict[str, Instrument]) -> None:
    """No gap: the data source has fewer candles than the window needs (a new listing)."""
    engine, _ex, store = build(instruments, FakeMarket(available=20))
    engine.tick()
    engine.tick()
    [started] = _of(store.events, EventKind.NO_DECISION)
    assert "candles start at" in started.reason
    assert "none older from the data source" in started.reason


def _minute(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M UTC")


def _hourly(n: int, missing: slice) -> tuple[np.ndarray, np.ndarray]:
    ts = np.arange(n, dtype=np.int64) * HOUR + T0
    ts = np.delete(ts, np.arange(n)[missing])
    close = 100 + np.cumsum(np.random.default_rng(3).normal(0, 1, len(ts)))
    return ts, close


def test_the_simulations_market_says_which_gap_cut_the_window() -> None:
    ts, close = _hourly(300, slice(200, 203))
    c = Candles(ts, close, close + 1, close - 1, close, close * 0 + 5, HOUR, "X", "trade", "t")
    hist = ContractHistory("X", c, _segment_starts(c), c, c, None)
    market = HistoricalMarket({"X": hist})
    cut = market.closed_candles("X", HOUR, 169, T0 + 210 * HOUR)
    assert cut.gap_before == (T0 + 200 * HOUR, T0 + 203 * HOUR)
    assert int(cut.ts[0]) == T0 + 203 * HOUR
    whole = market.closed_candles("X", HOUR, 169, T0 + 190 * HOUR)  # before the gap
    assert whole.gap_before is None
    after = market.closed_candles("X", HOUR, 50, T0 + 260 * HOUR)  # the gap is older
    assert after.gap_before is None


class _Venue:
    """Just the candles of a venue (what CcxtMarketData reads), three hours missing."""

    def __init__(self) -> None:
        ts, _ = _hourly(40, slice(30, 33))
        self.rows = [Candle(int(t), 100.0, 101.0, 99.0, 100.5, 1.0) for t in ts]

    def fetch_candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        return self.rows[-limit:]


def test_the_venues_market_says_which_gap_cut_the_window() -> None:
    market = CcxtMarketData(cast(CcxtExchange, _Venue()))
    window = market.closed_candles("X", HOUR, 30, T0 + 40 * HOUR)
    assert window.gap_before == (T0 + 30 * HOUR, T0 + 33 * HOUR)
    assert len(window) == 7
