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

from bot.clock import ms_to_datetime
from bot.domain.market import FundingInfo
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.exchange.mapping import Candle
from bot.sim.exchange import SimulatedExchange
from bot.sim.history import ClosedCandle, HistoricalMarket, set_lasts
from bot.sim.triggers import FundingTape, TriggerSeries, advance, to_decimal

MINUTE = 60_000
HOUR = 60 * MINUTE


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
        # The candle market orders and triggered stops pay their impact on (data-driven
        # slippage), moved to each catch-up's time by set_lasts, as the dry-run replay moves it
        # to each decision's: the stops triggered between two catch-ups pay for the candle
        # closed at the first, in both.
        self.candle = ClosedCandle(market, start)
        if sim.slippage_model.data_driven:
            sim.candle_lookup = self.candle

    def catch_up(self, now_ms: int) -> None:
        advance(self.sim, self.series, self.tapes, now_ms)
        symbols = list(self.series)
        for sym in symbols:
            self.sim.set_funding(sym, self.market.funding(sym, now_ms, 1))
        set_lasts(self.sim, self.market, symbols, now_ms, self.candle)


class LiveFeed:
    """Live public prices: 1-minute mark candles since the last call, then the current mark.

    A gap longer than one request of minute candles (the machine slept, the bot was stopped for
    a day) is checked on hourly mark candles up to where the minute candles begin, so a stop
    the market crossed meanwhile still fires (at hourly precision, and the log says so). Every
    funding settlement in the gap is paid, at the last rate the venue announced (the paper
    account does not download the rate history), the first one after a restart included: the
    saved account carries the settlement it was waiting for.
    """

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
        # The next settlement each contract waits for, as last announced (saved with the account).
        self._pending: dict[str, FundingInfo] = {
            sym: info
            for sym, info in sim.funding.items()
            if sym in symbols and info.next_settlement_ms is not None
        }

    def catch_up(self, now_ms: int) -> None:
        since = self.sim.processed_ms
        # From the candle that was still forming at the last check (its part before that check
        # was seen only as the mark of that moment: a wick through a stop or the liquidation
        # price in it went unchecked), as the replay feed does; +2: that candle, and the count's
        # own rounding down.
        minutes = (now_ms - since) // MINUTE + 2 if since else 2
        limit = int(min(max(minutes, 2), self.max_candles))
        # Past one request of minute candles, the older part is checked on hourly ones, up to
        # an hour boundary inside the minutes' reach: the two series leave no hole.
        cut = None
        if since and minutes > self.max_candles:
            reach = now_ms - (self.max_candles - 1) * MINUTE
            cut = reach - reach % HOUR + HOUR
        fine: dict[str, TriggerSeries] = {}
        coarse: dict[str, TriggerSeries] = {}
        # past a cut, the hourly candles cover up to it; else from the one forming at ``since``
        first = cut if cut is not None else since - MINUTE + 1
        for sym in self.symbols:
            rows = [
                r
                for r in self.public.fetch_candles(sym, "1m", limit, mark=True)
                if r.open_ms >= first
            ]
            fine[sym] = _series(rows, MINUTE)
            if cut is not None:
                coarse[sym] = _series(self._hourly(sym, since, cut, now_ms), HOUR)
        tapes = self._settlements(since, now_ms)
        if cut is not None:
            advance(self.sim, coarse, tapes, cut)  # with the settlements inside the hours
        advance(self.sim, fine, tapes, now_ms)
        for sym in self.symbols:
            info = self.public.fetch_funding(sym)
            self.sim.set_funding(sym, info)
            if info.next_settlement_ms is not None:
                self._pending[sym] = info
            mark = self.public.fetch_mark_price(sym)
            last = self.public.fetch_candles(sym, "1m", 1)
            self.sim.set_mark(sym, mark, Decimal(repr(last[-1].close)) if last else mark)
            if last and self.sim.slippage_model.data_driven:
                self._note_candle(sym, last[-1])

    def _note_candle(self, sym: str, candle: Candle) -> None:
        """The last closed 1-minute trade candle's range and volume: what the next decision's
        market orders pay their impact on (and the stops triggered before the next catch-up,
        whose range is their mark bar's). The dry run measures on the decision's candle; the
        square-root impact does not depend on the candle's length (bot.sim.slippage: the
        range grows as its square root, the volume as it), so a minute measures the same cost
        without reading longer candles. A venue that reports no volume leaves it unknown: the
        floor alone."""
        if candle.open <= 0:
            return
        self.sim.candle_range[sym] = to_decimal((candle.high - candle.low) / candle.open)
        if candle.volume > 0:
            self.sim.candle_volume[sym] = to_decimal(candle.volume)
        else:
            self.sim.candle_volume.pop(sym, None)

    def _hourly(self, sym: str, since: int, cut: int, now_ms: int) -> list[Candle]:
        """Hourly mark candles, from the one forming at ``since`` to the last closing by ``cut``."""
        hours = (now_ms - since) // HOUR + 2
        if hours > self.max_candles:
            logger.warning(
                "{}: {} hours since the last price check; triggers before the last {} hours "
                "are not checked",
                sym,
                hours,
                self.max_candles,
            )
        rows = self.public.fetch_candles(sym, "1h", int(min(hours, self.max_candles)), mark=True)
        # from the hour forming at ``since`` (see catch_up)
        kept = [r for r in rows if r.open_ms + HOUR > since and r.open_ms + HOUR <= cut]
        logger.warning(
            "{}: {} minutes since the last price check, more than one request of minute "
            "candles: triggers until {} are checked on {} hourly candles",
            sym,
            (now_ms - since) // MINUTE,
            ms_to_datetime(cut).isoformat(),
            len(kept),
        )
        return kept

    def _settlements(self, since: int, now_ms: int) -> dict[str, FundingTape]:
        """Every settlement in (since, now] of each contract, from the one it waited for on,
        every interval, at the rate last announced."""
        tapes: dict[str, FundingTape] = {}
        for sym, info in self._pending.items():
            t = info.next_settlement_ms
            step = int(info.interval_hours * HOUR)
            if t is None or step <= 0:
                continue
            times: list[int] = []
            while t <= now_ms:
                if t > since:
                    times.append(t)
                t += step
            if times:
                if len(times) > 1:
                    logger.warning(
                        "{}: {} funding settlements since the last price check, each paid at the "
                        "last announced rate {}",
                        sym,
                        len(times),
                        info.rate,
                    )
                tapes[sym] = FundingTape(
                    np.array(times, dtype=np.int64),
                    np.full(len(times), float(info.rate)),
                )
        return tapes


def _series(rows: list[Candle], tf_ms: int) -> TriggerSeries:
    ts = np.array([r.open_ms for r in rows], dtype=np.int64)
    o, h, lo, c = (
        np.array([getattr(r, k) for r in rows], dtype=np.float64)
        for k in ("open", "high", "low", "close")
    )
    return TriggerSeries(ts, o, h, lo, c, tf_ms, "mark")
