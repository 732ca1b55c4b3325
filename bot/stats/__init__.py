"""Market statistics over candle arrays: timeframes, volatility estimators, ATR (numpy, pure)."""

from bot.stats.timeframes import MS_PER_YEAR, closed_count, parse_timeframe, periods_per_year
from bot.stats.volatility import (
    ESTIMATORS,
    atr,
    close_to_close,
    estimate,
    ewma,
    garman_klass,
    parkinson,
    yang_zhang,
)
from bot.stats.window_series import rolling, rolling_atr

__all__ = [
    "ESTIMATORS",
    "MS_PER_YEAR",
    "atr",
    "close_to_close",
    "closed_count",
    "estimate",
    "ewma",
    "garman_klass",
    "parkinson",
    "parse_timeframe",
    "periods_per_year",
    "rolling",
    "rolling_atr",
    "yang_zhang",
]
