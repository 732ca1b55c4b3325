"""Named adversarial markets: each writes its data files into a directory and returns the
contracts it holds. 5-minute candles over 12 days (the 1h policies' week of warm-up, then the
event on day 10), liquid volumes, 8-hourly funding unless the scenario says otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from tests.audit.market import DAY, HOUR, T0, Series, eight_hourly, walk, write_market

N = 12 * 288  # 5-minute candles
EVENT = 10 * 288 + 150  # day 10, 12:30 UTC
BTC, ETH, SOL, DOGE = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT", "DOGE/USDT:USDT"
PEPE = "1000PEPE/USDT:USDT"

Scenario = Callable[[Path], list[str]]


def _funding(s: Series, rate: float = 0.0001) -> tuple[np.ndarray, np.ndarray]:
    return eight_hourly(T0, int(s.ts[-1]) + 300_000, rate)


def crash_inside(fall: float = 0.40, mark_fall: float | None = None) -> Scenario:
    """BTC falls ``fall`` inside one 5-minute candle and closes 30 % off its low; the mark
    candle falls ``mark_fall`` (None: as the last price)."""

    def write(data: Path) -> list[str]:
        trade = walk(N, 60_000.0, seed=1)
        trade.crash_inside(EVENT, fall, recover=0.3)
        mark = trade.copy()
        if mark_fall is not None:
            mark.low[EVENT] = mark.open[EVENT] * (1 - mark_fall)
        write_market(data, BTC, trade, mark, _funding(trade))
        return [BTC]

    return write


def gap(factor: float, hours: int) -> Scenario:
    """ETH data missing for ``hours``, trading resumes ``factor`` away."""

    def write(data: Path) -> list[str]:
        trade = walk(N, 3_000.0, seed=2)
        trade.gap(EVENT, hours * 12, factor)
        write_market(data, ETH, trade, trade.copy(), _funding(trade))
        return [ETH]

    return write


def spike(rise: float) -> Scenario:
    """SOL trades ``rise`` above its open inside one candle (a limit-up squeeze)."""

    def write(data: Path) -> list[str]:
        trade = walk(N, 150.0, seed=3)
        trade.spike_inside(EVENT, rise, 0.2)
        write_market(data, SOL, trade, trade.copy(), _funding(trade))
        return [SOL]

    return write


def flat(first_day: int, days: int) -> Scenario:
    """BTC does not move at all (zero range, zero volume) for ``days`` from ``first_day``;
    ``first_day`` 0 and 12 days: never."""

    def write(data: Path) -> list[str]:
        trade = walk(N, 60_000.0, seed=4)
        trade.flat(max(1, first_day * 288), min(N, (first_day + days) * 288))
        write_market(data, BTC, trade, trade.copy(), _funding(trade))
        return [BTC]

    return write


def priced(symbol: str, price0: float) -> Scenario:
    """``symbol`` walking from ``price0`` (near its tick, or far above any usual price), with
    a 30 % crash inside one candle."""

    def write(data: Path) -> list[str]:
        trade = walk(N, price0, seed=5)
        trade.crash_inside(EVENT, 0.3, 0.1)
        write_market(data, symbol, trade, trade.copy(), _funding(trade))
        return [symbol]

    return write


def funding(rate: float, shrinking_interval: bool = False) -> Scenario:
    """BTC paying ``rate`` per settlement; with ``shrinking_interval`` the settlements move
    from 8-hourly to 4-hourly (day 4) to hourly (day 8)."""

    def write(data: Path) -> list[str]:
        trade = walk(N, 60_000.0, seed=6)
        end = int(trade.ts[-1]) + 300_000
        if shrinking_interval:
            ts = np.r_[
                np.arange(T0, T0 + 4 * DAY, 8 * HOUR),
                np.arange(T0 + 4 * DAY, T0 + 8 * DAY, 4 * HOUR),
                np.arange(T0 + 8 * DAY, end, HOUR),
            ].astype(np.int64)
            tape = (ts, np.full(ts.size, rate))
        else:
            tape = eight_hourly(T0, end, rate)
        write_market(data, BTC, trade, trade.copy(), tape)
        return [BTC]

    return write


def zero_volume(data: Path) -> list[str]:
    """Every candle with zero traded volume (the impact term's denominator), and a crash."""
    trade = walk(N, 60_000.0, seed=7)
    trade.crash_inside(EVENT, 0.2, 0.1)
    trade.volume[:] = 0.0
    write_market(data, BTC, trade, trade.copy(), _funding(trade))
    return [BTC]


def all_crash(data: Path) -> list[str]:
    """Four contracts crash 35 % in the same candle."""
    out = []
    for n, (sym, px) in enumerate(((BTC, 60_000.0), (ETH, 3_000.0), (SOL, 150.0), (DOGE, 0.1))):
        trade = walk(N, px, seed=10 + n)
        trade.crash_inside(EVENT, 0.35, 0.05)
        write_market(data, sym, trade, trade.copy(), _funding(trade))
        out.append(sym)
    return out


def all_spike(data: Path) -> list[str]:
    """Four contracts squeeze 40 % up in the same candle (BTC 25 %)."""
    out = []
    for n, (sym, px) in enumerate(((BTC, 60_000.0), (ETH, 3_000.0), (SOL, 150.0), (DOGE, 0.1))):
        trade = walk(N, px, seed=10 + n)
        trade.spike_inside(EVENT, 0.25 if sym == BTC else 0.40, 0.05)
        write_market(data, sym, trade, trade.copy(), _funding(trade))
        out.append(sym)
    return out


SCENARIOS: dict[str, Scenario] = {
    "crash_40": crash_inside(),
    "crash_40_mark_20": crash_inside(0.40, mark_fall=0.20),
    "crash_10_mark_40": crash_inside(0.10, mark_fall=0.40),
    "gap_down_30_over_6h": gap(0.7, 6),
    "gap_up_30_over_6h": gap(1.3, 6),
    "gap_down_60_over_30h": gap(0.4, 30),
    "spike_100": spike(1.0),
    "flat_3_days": flat(2, 3),
    "flat_always": flat(0, 12),
    "pepe_at_1e-6": priced(PEPE, 1e-6),
    "pepe_at_3e-6": priced(PEPE, 3e-6),
    "btc_at_1e6": priced(BTC, 1e6),
    "funding_plus_2pct": funding(0.02),
    "funding_minus_2pct": funding(-0.02),
    "funding_8h_4h_1h": funding(0.005, shrinking_interval=True),
    "zero_volume": zero_volume,
    "all_crash_35": all_crash,
    "all_spike_40": all_spike,
}
