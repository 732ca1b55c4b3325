"""Price feeds: what moves the paper exchange between ticks.

A feed brings the simulated exchange up to ``now``: it runs the resting orders' triggers and the
liquidation check over every mark-price bar since the last call (the same vectorised code as the
dry-run simulation), settles funding at the settlement times, and sets the last and mark prices.

* :class:`ReplayFeed`: recorded data (``bot run --replay DIR``).
* :class:`LiveFeed`: the exchange's public data through ccxt (no keys).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

import numpy as np
from loguru import logger

from bot.exchange.ccxt_adapter import CcxtExchange
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import HistoricalMarket
from bot.sim.triggers import FundingTape, TriggerSeries, advance

MINUTE = 60_000


class PriceFeed(Protocol):
    def catch_up(self, now_ms: int) -> None: ...


class ReplayFeed:
    """Recorded history, from where the paper account last stopped."""

    def __init__(self, sim: SimulatedExchange, market: HistoricalMarket) -> None:
        self.sim = sim
        self.market = market
        self.series = market.trigger_series()
        self.tapes = market.funding_tapes()
        start = sim.processed_ms
        for s in self.series.values():
            s.cursor = int(np.searchsorted(s.ts, start - s.tf_ms, side="right"))
        for tape in self.tapes.values():
            tape.cursor = int(np.searchsorted(tape.ts, start, side="right"))

    def catch_up(self, now_ms: int) -> None:
        advance(self.sim, self.series, self.tapes, now_ms)
        for sym in self.series:
            self.sim.set_funding(sym, self.market.funding(sym, now_ms, 1))
            last = self.market.last_price(sym, now_ms)
            if last is not None:
                self.sim.lasts[sym] = last[0]


class LiveFeed:
    """Live public prices: 1-minute mark candles since the last call, then the current mark."""

    def __init__(
        self,
        sim: SimulatedExchange,
        public: CcxtExchange,
        symbols: list[str],
        *,
        max_candles: int = 1000,
    ) -> None:
        self.sim = sim
        self.public = public
        self.symbols = symbols
        self.max_candles = max_candles
        self._pending: dict[str, tuple[int, Decimal]] = {}

    def catch_up(self, now_ms: int) -> None:
        since = self.sim.processed_ms
        series: dict[str, TriggerSeries] = {}
        tapes: dict[str, FundingTape] = {}
        for sym in self.symbols:
            minutes = (now_ms - since) // MINUTE + 1 if since else 2
            limit = int(min(max(minutes, 2), self.max_candles))
            if since and minutes > self.max_candles:
                logger.warning(
                    "{}: {} minutes since the last price check; triggers are checked "
                    "on the last {} only",
                    sym,
                    minutes,
                    self.max_candles,
                )
            rows = [
                r
                for r in self.public.fetch_candles(sym, "1m", limit, mark=True)
                if r.open_ms >= since
            ]
            ts = np.array([r.open_ms for r in rows], dtype=np.int64)
            o, h, lo, c = (
                np.array([getattr(r, k) for r in rows], dtype=np.float64)
                for k in ("open", "high", "low", "close")
            )
            series[sym] = TriggerSeries(ts, o, h, lo, c, MINUTE, "mark")
            pending = self._pending.get(sym)
            if pending is not None and since < pending[0] <= now_ms:
                tapes[sym] = FundingTape(
                    np.array([pending[0]], dtype=np.int64), np.array([float(pending[1])])
                )
        advance(self.sim, series, tapes, now_ms)
        for sym in self.symbols:
            info = self.public.fetch_funding(sym)
            self.sim.set_funding(sym, info)
            if info.next_settlement_ms is not None:
                self._pending[sym] = (info.next_settlement_ms, info.rate)
            mark = self.public.fetch_mark_price(sym)
            last = self.public.fetch_candles(sym, "1m", 1)
            self.sim.set_mark(sym, mark, Decimal(repr(last[-1].close)) if last else mark)
