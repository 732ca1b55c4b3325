"""Market data: candle and funding series, their files, and signal files.

Timestamps are int64 UTC epoch milliseconds; candles carry their open time.
"""

from bot.marketdata.candles import Candles, FundingSeries, format_timeframe, parse_timeframe
from bot.marketdata.files import (
    DataInventory,
    discover,
    load_candles,
    load_funding,
    stem_to_symbol,
    symbol_to_stem,
)
from bot.marketdata.signals import SignalSeries, load_signals

__all__ = [
    "Candles",
    "DataInventory",
    "FundingSeries",
    "SignalSeries",
    "discover",
    "format_timeframe",
    "load_candles",
    "load_funding",
    "load_signals",
    "parse_timeframe",
    "stem_to_symbol",
    "symbol_to_stem",
]
