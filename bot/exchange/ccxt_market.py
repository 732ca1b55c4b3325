"""Market data through ccxt (public endpoints): the market data port for paper and live trading."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from bot.domain.market import FundingInfo
from bot.errors import DataError
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.marketdata.candles import FundingSeries
from bot.marketdata.funding import settled_mean
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


_HOUR_MS = 3_600_000
_MINUTE_MS = 60_000
# Settled rows read beyond ``lookback``: the hours the oldest averaged rate covers are read from
# the two steps before it (FundingSeries.step_at), as the simulation reads them in its file.
_SPAN_ROWS = 2


@dataclass(frozen=True, slots=True)
class _History:
    """Settled funding rates as last read: oldest first; the next settlement the venue
    announced then (None: read again next time); whether the venue has no older ones."""

    rows: list[tuple[int, Decimal]]
    next_ms: int | None
    complete: bool


class CcxtMarketData:
    """Implements :class:`bot.ports.market.MarketDataPort` over a :class:`CcxtExchange`.

    Candles come from the exchange with the forming candle dropped, checked by the adapter
    (:func:`bot.exchange.mapping.closed_candles`: price bars, strictly increasing times; a bad
    one is an unreadable answer that costs its contract the decision) before statistics see
    them.
    """

    def __init__(self, exchange: CcxtExchange) -> None:
        self.exchange = exchange
        self._history: dict[str, _History] = {}

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
        """The mean of the last ``lookback`` settled rates, read as the simulation reads its
        funding file (:func:`bot.marketdata.funding.settled_mean`: same rounding, fewer rows
        than ``lookback`` averaged as they are, the interval from the settlement times), with
        the next settlement the venue announces now.

        The venue's current (predicted) rate is read too, for the next settlement time and as
        the estimate of a contract with no settlement yet (a new listing: its history is
        empty, and 0 would be an unknown read as free). It is not the decision's rate: in a
        squeeze it prints far from the settled ones, and the simulation cannot see it.
        """
        current = self.exchange.fetch_funding(symbol)
        settled = self._settled(symbol, lookback + _SPAN_ROWS, current)
        if not settled:
            return current
        nxt = current.next_settlement_ms
        ts = [t for t, _ in settled]
        rates = [float(r) for _, r in settled]
        if nxt is not None and nxt > ts[-1]:
            # the step after the latest settlement ends at the announced next one, as the
            # simulation's file row after now does (FundingSeries.step_at); never averaged
            ts.append(nxt)
            rates.append(0.0)
        series = FundingSeries(
            np.array(ts, dtype=np.int64), np.array(rates), symbol, f"{symbol} settled funding"
        )
        info = settled_mean(series, len(settled), lookback)
        return FundingInfo(info.rate, info.interval_hours, nxt)

    def _settled(self, symbol: str, need: int, current: FundingInfo) -> list[tuple[int, Decimal]]:
        """The latest ``need`` settled rates of ``symbol`` (fewer when the venue has no more).

        Settled rates change only at a settlement: the history read is kept until the venue
        announces another next settlement (one read per settlement and contract: Binance
        /fapi/v1/fundingRate shares a budget of 500 requests per 5 minutes per IP with
        /fapi/v1/fundingInfo; weight 1 in ccxt, 5 on Bybit). A read that does not yet list
        the settlement just past (the venue publishes it a moment after the settlement) is
        not kept: the next tick reads again. A later read asks for the latest rows only and
        joins them to the kept ones when they overlap.
        """
        nxt = current.next_settlement_ms
        kept = self._history.get(symbol)
        if (
            kept is not None
            and nxt is not None
            and kept.next_ms == nxt
            and (len(kept.rows) >= need or kept.complete)
        ):
            return kept.rows[-need:]
        per = self.exchange.funding_history_rows
        want = min(need, per)
        page = self.exchange.fetch_funding_history(symbol, want)
        complete = len(page) < want
        rows = page
        if kept is not None and kept.rows and page and page[0][0] <= kept.rows[-1][0]:
            rows = [r for r in kept.rows if r[0] < page[0][0]] + page
            complete = complete or kept.complete
        while len(rows) < need and not complete:
            # Older pages by time window: one of ``per`` hours holds at most ``per``
            # settlements (the shortest venue interval is 1 h), so none is cut short.
            end = rows[0][0] - 1
            older = self.exchange.fetch_funding_history(
                symbol, per, since_ms=end - (per - 1) * _HOUR_MS, until_ms=end
            )
            older = [r for r in older if r[0] < rows[0][0]]
            if not older:
                complete = True
                break
            rows = older + rows
        rows = rows[-need:]
        interval_ms = int(current.interval_hours * _HOUR_MS)
        # settlement times jitter by a few ms (mapping.interval_from_history): a minute's slack
        current_up_to = (
            nxt is not None and bool(rows) and rows[-1][0] >= nxt - interval_ms - _MINUTE_MS
        )
        self._history[symbol] = _History(
            rows, nxt if current_up_to or (complete and not rows) else None, complete
        )
        return rows

    def last_price(self, symbol: str, now_ms: int) -> tuple[Decimal, int] | None:
        return self.exchange.fetch_last_price(symbol)
