"""Market data through ccxt (public endpoints): the market data port for paper and live trading."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from bot.domain.market import FundingInfo
from bot.errors import DataError
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.ports.market import CandleWindow

_TIMEFRAMES = {
    60_000: "1m",
    300_000: "5m",
    900_000: "15m",
    1_800_000: "30m",
    3_600_000: "1h",
    7_200_000: "2h",
    14_400_000: "4h",
    28_800_000: "8h",
    86_400_000: "1d",
}


# Candles one ``fetch_ohlcv`` returns at most: ccxt caps Binance USD-M at 1000 (the venue
# documents 1500, ccxt finds wider ranges unreliable: ccxt/binance.py fetch_ohlcv), Bybit's v5
# kline endpoint at 1000 (https://bybit-exchange.github.io/docs/v5/market/kline).
MAX_CANDLES_PER_REQUEST = {"binanceusdm": 1000, "bybit": 1000}


def closed_candles_per_request(venue: str) -> int:
    """Closed candles one read can bring (the forming one is asked for too, then dropped)."""
    return MAX_CANDLES_PER_REQUEST.get(venue, 1000) - 1


def served_timeframes() -> tuple[str, ...]:
    """The candle lengths live prices are read in, shortest first."""
    return tuple(_TIMEFRAMES[ms] for ms in sorted(_TIMEFRAMES))


def serves(tf_ms: int) -> bool:
    """Whether the venues' candle reads serve candles ``tf_ms`` long."""
    return tf_ms in _TIMEFRAMES


def timeframe_name(tf_ms: int) -> str:
    try:
        return _TIMEFRAMES[tf_ms]
    except KeyError:
        raise DataError(f"no exchange timeframe for {tf_ms} ms") from None


class CcxtMarketData:
    """Implements :class:`bot.ports.market.MarketDataPort` over a :class:`CcxtExchange`.

    Candles come from the exchange with the forming candle dropped, checked by the adapter
    (:func:`bot.exchange.mapping.closed_candles`: price bars, strictly increasing times; a bad
    one is an unreadable answer that costs its contract the decision) before statistics see
    them.
    """

    def __init__(self, exchange: CcxtExchange) -> None:
        self.exchange = exchange

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        rows = self.exchange.fetch_candles(symbol, timeframe_name(tf_ms), count)
        rows = [r for r in rows if r.open_ms + tf_ms <= now_ms]
        arr = np.array([(r.open, r.high, r.low, r.close) for r in rows], dtype=np.float64)
        ts = np.array([r.open_ms for r in rows], dtype=np.int64)
        if len(rows):
            # A missing candle breaks the window: keep only the last contiguous run.
            breaks = np.flatnonzero(np.diff(ts) != tf_ms)
            start = int(breaks[-1]) + 1 if len(breaks) else 0
            gap = (rows[start - 1].open_ms + tf_ms, rows[start].open_ms) if start else None
            ts, arr = ts[start:], arr[start:]
            o, h, lo, c = arr.T
            # Base units; a venue that reports none gives 0 (bot.exchange.mapping.closed_candles),
            # which the snapshot reads as unknown, never as "no limit".
            volume = np.array([r.volume for r in rows[start:]], dtype=np.float64)
            volume[~np.isfinite(volume) | (volume < 0)] = 0.0
            return CandleWindow(
                ts, o.copy(), h.copy(), lo.copy(), c.copy(), tf_ms, volume=volume, gap_before=gap
            )
        empty = np.zeros(0)
        return CandleWindow(ts, empty, empty, empty, empty, tf_ms, volume=empty)

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        # The venue's current rate is the best estimate of the next settlement's.
        return self.exchange.fetch_funding(symbol)

    def last_price(self, symbol: str, now_ms: int) -> tuple[Decimal, int] | None:
        return self.exchange.fetch_last_price(symbol)
