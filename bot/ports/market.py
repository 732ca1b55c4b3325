"""The market-data port: closed candles, funding and the last price, as the engine reads them.

Implementations: :class:`bot.sim.history.HistoricalMarket` (simulation, paper replay) and
:class:`bot.exchange.ccxt_market.CcxtMarketData` (the venue's public data). Only the composition
root chooses one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bot.domain.market import FundingInfo

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class StatisticsSpec:
    """What the engine estimates on each window: the volatility estimator and its window, the
    EWMA decay, the ATR window, and how many candles the window holds (``span``: ATR uses them
    all)."""

    estimator: str
    window: int
    lam: float
    atr_window: int
    span: int


@dataclass(frozen=True, slots=True)
class WindowStatistics:
    """Volatility (annualised) and ATR (price units) of a window, computed ahead of time by a
    market-data implementation that holds the whole history (simulation): the engine uses them
    instead of estimating on the window, when ``spec`` is the one it would have used."""

    spec: StatisticsSpec
    volatility: float
    atr: float
    # Mean traded volume per candle (base units) over the estimator's window; NaN: unknown.
    volume: float = math.nan


@dataclass(frozen=True, slots=True)
class CandleWindow:
    """The last closed candles of one contract (oldest first), float64 arrays. ``volume`` is
    each candle's traded volume in base units, ``None`` when the source gives none.
    ``gap_before``: [from, to) in ms, the candles missing just before the first one when the
    source cut the window there (a window never spans a gap: returns across it would be
    invented), so that a window too short to decide on can say why; ``None`` when the window is
    not cut by a gap (full, or the source has nothing older)."""

    ts: npt.NDArray[np.int64]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    tf_ms: int
    statistics: WindowStatistics | None = None
    volume: FloatArray | None = None
    gap_before: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.ts)


class MarketDataPort(Protocol):
    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        """At most ``count`` candles of ``tf_ms`` that are closed at ``now_ms`` (never the forming
        one), ending with the latest."""
        ...

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        """The mean of the last ``lookback`` settled rates, the observed interval and the next
        settlement time."""
        ...

    def last_price(self, symbol: str, now_ms: int) -> tuple[Decimal, int] | None:
        """The last traded price known at ``now_ms`` and the time it was current (close of the
        latest closed candle), or ``None`` when there is no data at all."""
        ...
