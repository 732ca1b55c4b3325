"""The worst historical price moves in a data directory, over fixed horizons (numpy).

A move over a horizon of ``n`` candles starting at candle ``i`` runs from that candle's open to
the lowest low (a drop) or the highest high (a rise) of candles ``i .. i+n-1``. Every last-trade
series of the contract whose timeframe divides the horizon is searched (5 m candles find 1 h moves
that straddle two 1 h candles; 1 h candles reach further back), windows never span a data gap,
and the worst move over all of them is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bot.marketdata.candles import Candles, format_timeframe, parse_timeframe
from bot.marketdata.files import DataInventory

__all__ = ["HORIZONS", "Extreme", "find_extremes", "worst_moves"]

HORIZONS = ("5m", "1h", "1d")


@dataclass(frozen=True, slots=True)
class Extreme:
    """One historical move. ``move`` is a fraction (-0.12 = a 12 % drop); times are epoch ms."""

    symbol: str
    horizon: str
    direction: int  # -1 drop, +1 rise
    move: float
    start_ms: int  # open of the window
    at_ms: int  # open time of the candle that made the low (or high)
    from_price: float
    to_price: float
    timeframe: str  # candles it was found in


def worst_moves(c: Candles, horizon_ms: int) -> tuple[Extreme | None, Extreme | None]:
    """(largest drop, largest rise) over windows of ``horizon_ms`` in ``c`` (None: too short)."""
    if horizon_ms % c.tf_ms != 0:
        raise ValueError(
            f"{c.source}: horizon {horizon_ms} ms is not a multiple of {format_timeframe(c.tf_ms)}"
        )
    n = horizon_ms // c.tf_ms
    best: list[Extreme | None] = [None, None]
    for first_ms, last_ms in c.segments():
        a = int(np.searchsorted(c.ts, first_ms))
        b = int(np.searchsorted(c.ts, last_ms)) + 1
        if b - a < n:
            continue
        opens = c.open[a : b - n + 1]
        for slot, (series, pick) in enumerate(((c.low, np.argmin), (c.high, np.argmax))):
            windows = sliding_window_view(series[a:b], n)
            ratio = (windows.min(axis=1) if slot == 0 else windows.max(axis=1)) / opens - 1.0
            k = int(pick(ratio))
            found = _extreme(c, horizon_ms, slot, a + k, a + k + int(pick(windows[k])), ratio[k])
            current = best[slot]
            if current is None or abs(found.move) > abs(current.move):
                best[slot] = found
    return best[0], best[1]


def _extreme(c: Candles, horizon_ms: int, slot: int, i: int, j: int, move: float) -> Extreme:
    return Extreme(
        symbol=c.symbol,
        horizon=format_timeframe(horizon_ms),
        direction=-1 if slot == 0 else 1,
        move=float(move),
        start_ms=int(c.ts[i]),
        at_ms=int(c.ts[j]),
        from_price=float(c.open[i]),
        to_price=float(c.low[j] if slot == 0 else c.high[j]),
        timeframe=format_timeframe(c.tf_ms),
    )


def find_extremes(
    inventory: DataInventory, symbol: str, horizons: tuple[str, ...] = HORIZONS
) -> list[Extreme]:
    """The largest drop and rise of ``symbol`` for each horizon, over every usable series."""
    series = [inventory.load_candles(symbol, tf) for tf in inventory.trade_timeframes(symbol)]
    out: list[Extreme] = []
    for horizon in horizons:
        h_ms = parse_timeframe(horizon)
        best: list[Extreme | None] = [None, None]
        for c in series:
            if h_ms % c.tf_ms != 0:
                continue
            for slot, found in enumerate(worst_moves(c, h_ms)):
                current = best[slot]
                if found is not None and (current is None or abs(found.move) > abs(current.move)):
                    best[slot] = found
        out += [e for e in best if e is not None]
    return out
