"""Paper trading on live prices across a gap: the bot restarted, or the machine suspended for a
day. The paper account must pay every funding settlement it slept through (the first one after
a restart included) and fire a stop the market crossed while nobody looked, as the exchange
would have.

The public venue is a hand-written fake with the adapter's reads (mark candles by timeframe,
the current mark, funding), serving a scripted mark path on the injected clock.
"""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.clock import SimClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo
from bot.domain.orders import OrderRequest
from bot.exchange.mapping import Candle
from bot.runtime.feeds import LiveFeed
from bot.sim.exchange import SimulatedExchange
from bot.sim.paper_state import dump, restore
from bot.sim.slippage import SlippageModel
from tests.conftest import make_exchange

BTC = "BTC/USDT:USDT"
MINUTE = 60_000
HOUR = 60 * MINUTE
T0 = 1_750_000_000_000 - 1_750_000_000_000 % (8 * HOUR) + 8 * HOUR  # a settlement time
RATE = D("0.0001")


class FakeVenue:
    """Mark 60000, except a dip to 54500 (below the stop, above the liquidation) during the
    minute ``dip_ms`` (if set); settlements every 8 hours from T0."""

    def __init__(self, clock: SimClock, dip_ms: int | None = None) -> None:
        self.clock = clock
        self.dip_ms = dip_ms

    def _bar(self, open_ms: int, tf_ms: int) -> Candle:
        dip = self.dip_ms is not None and open_ms <= self.dip_ms < open_ms + tf_ms
        return Candle(open_ms, 60000.0, 60000.0, 54500.0 if dip else 60000.0, 60000.0, 1.0)

    def fetch_candles(
        self, symbol: str, timeframe: str, limit: int, *, mark: bool = False
    ) -> list[Candle]:
        tf = {"1m": MINUTE, "1h": HOUR}[timeframe]
        now = self.clock.now_ms()
        last_open = now - now % tf - tf  # the last closed bar
        return [self._bar(last_open - i * tf, tf) for i in reversed(range(limit))]

    def fetch_mark_price(self, symbol: str) -> D:
        return D(60000)

    def fetch_funding(self, symbol: str) -> FundingInfo:
        now = self.clock.now_ms()
        nxt = now - (now - T0) % (8 * HOUR) + 8 * HOUR
        return FundingInfo(RATE, D(8), nxt)


def long_with_stop(instruments: dict[str, Instrument]) -> tuple[SimulatedExchange, SimClock]:
    ex, clock = make_exchange({BTC: instruments[BTC]})
    clock.advance_to(T0 + 10 * MINUTE)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 10)
    ex.place_order(
        OrderRequest("e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D(1), False)
    )
    ex.place_order(
        OrderRequest(
            "sl",
            BTC,
            OrderSide.SELL,
            OrderType.STOP_MARKET,
            OrderPurpose.STOP_LOSS,
            D(1),
            True,
            trigger_price=D(55000),
        )
    )
    return ex, clock


def feed(ex: SimulatedExchange, venue: FakeVenue) -> LiveFeed:
    return LiveFeed(ex, venue, [BTC])  # type: ignore[arg-type]


def test_a_settlement_while_the_bot_was_stopped_is_paid_at_the_restart(
    instruments: dict[str, Instrument],
) -> None:
    ex, clock = long_with_stop(instruments)
    venue = FakeVenue(clock)
    feed(ex, venue).catch_up(clock.now_ms())  # announces the settlement at T0 + 8 h
    saved = dump(ex)
    clock.advance_to(T0 + 8 * HOUR + 30 * MINUTE)  # stopped over the settlement, restarted
    again, _ = make_exchange({BTC: instruments[BTC]})
    again.clock = clock
    restore(again, saved)
    paid_before = again.funding_paid
    feed(again, venue).catch_up(clock.now_ms())
    assert again.funding_paid - paid_before == RATE * 60000  # one settlement of a 1 BTC long


def test_a_day_asleep_pays_every_settlement_and_fires_the_crossed_stop(
    instruments: dict[str, Instrument],
) -> None:
    ex, clock = long_with_stop(instruments)
    venue = FakeVenue(clock, dip_ms=T0 + 5 * HOUR + 30 * MINUTE)
    live = feed(ex, venue)
    live.catch_up(clock.now_ms())
    paid_before = ex.funding_paid
    assert ex.fetch_positions([BTC])[BTC].qty == 1
    # Suspended 40 hours: the dip below the stop was 34 hours ago, beyond the 1000 minutes
    # one request of minute candles reaches.
    clock.advance_to(T0 + 40 * HOUR + 10 * MINUTE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(live, "max_candles", 1000)
        live.catch_up(clock.now_ms())
    assert BTC not in ex.fetch_positions([BTC]), "the stop crossed while asleep did not fire"
    [stop_fill] = [f for f in ex.fills if f.client_id == "sl"]
    assert T0 + 5 * HOUR <= stop_fill.timestamp_ms < T0 + 6 * HOUR
    # The position was held over no settlement before the stop (T0 + 8 h came after it).
    assert ex.funding_paid == paid_before


def test_every_settlement_slept_through_is_paid(instruments: dict[str, Instrument]) -> None:
    ex, clock = long_with_stop(instruments)
    venue = FakeVenue(clock)  # no dip: the long is held all along
    live = feed(ex, venue)
    live.catch_up(clock.now_ms())
    paid_before = ex.funding_paid
    clock.advance_to(T0 + 40 * HOUR + 10 * MINUTE)  # settlements at 8, 16, 24, 32 and 40 h
    live.catch_up(clock.now_ms())
    assert ex.funding_paid - paid_before == 5 * RATE * 60000
    assert ex.fetch_positions([BTC])[BTC].qty == 1


@pytest.mark.parametrize("asleep_hours", [0, 40])
def test_a_wick_in_the_candle_forming_at_the_last_check_fires_the_stop(
    instruments: dict[str, Instrument], asleep_hours: int
) -> None:
    """Checks run a little after the minute: the candle forming at one check was seen only as
    the mark of that moment, and left out of the next (it opened before the check), so a wick
    through the stop in it never fired the stop, every minute. Past a gap longer than one
    request of minute candles, the hour forming at the last check is the one left out."""
    ex, clock = long_with_stop(instruments)
    clock.advance_to(T0 + 10 * MINUTE + 250)  # a check 250 ms into the minute
    dip = T0 + 10 * MINUTE + 40_000  # the mark dips through the stop 40 s into it
    live = feed(ex, FakeVenue(clock, dip_ms=dip))
    live.catch_up(clock.now_ms())
    assert ex.fetch_positions([BTC])[BTC].qty == 1  # that minute is still forming
    clock.advance_to(T0 + 11 * MINUTE + 300 + asleep_hours * HOUR)
    live.catch_up(clock.now_ms())
    assert BTC not in ex.fetch_positions([BTC]), "the wick through the stop did not fire it"
    [stop_fill] = [f for f in ex.fills if f.client_id == "sl"]
    bar = HOUR if asleep_hours else MINUTE  # stamped at the open of the candle that crossed
    assert stop_fill.timestamp_ms == dip - dip % bar


class TradedVenue(FakeVenue):
    """Last-trade minute candles that move: 59940..60060 (0.2 % of the open) on 4 BTC."""

    def fetch_candles(
        self, symbol: str, timeframe: str, limit: int, *, mark: bool = False
    ) -> list[Candle]:
        bars = super().fetch_candles(symbol, timeframe, limit, mark=mark)
        if mark:
            return bars
        return [Candle(b.open_ms, 60000.0, 60060.0, 59940.0, 60000.0, 4.0) for b in bars]


def test_paper_on_live_prices_pays_the_impact_on_the_last_closed_minute(
    instruments: dict[str, Instrument],
) -> None:
    """``range_impact`` charges a market order the square-root impact on the candle that just
    closed (bot/sim/slippage.py); on live prices that is the last closed 1-minute trade candle
    the feed reads. Before, the feed noted no volume: the impact term was 0 (the floor only)."""
    model = SlippageModel(D("0.0002"), D("0.1"), D(1))
    clock = SimClock(T0 + 10 * MINUTE)
    ex = SimulatedExchange(
        {BTC: instruments[BTC]},
        clock,
        starting_balance=D(100000),
        margin_mode=MarginMode.ISOLATED,
        slippage_model=model,
    )
    feed(ex, TradedVenue(clock)).catch_up(clock.now_ms())
    ex.set_leverage(BTC, 10)
    ex.place_order(
        OrderRequest("e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D(1), False)
    )
    [fill] = ex.fills
    # floor 0.02 % + impact 1 x 0.2 % x sqrt(1 / 4) = 0.12 % above the last price (60000);
    # the floor alone would be 60012
    assert fill.price == D("60072")
