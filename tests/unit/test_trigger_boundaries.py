"""Boundaries of the simulated venue's triggers and liquidations within a bar, and of the
prices its stop-market orders fill at (bot/sim/triggers.py), that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)

Triggers are judged on the mark, fills are made against the book (the last price): a trigger
or a liquidation missed at its exact level, or a stop filled at a price the book was not at,
reports a backtest better than the venue would have let it be."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np

from bot.domain.enums import MarginMode, OrderSide, OrderStatus
from bot.domain.instrument import Instrument
from bot.sim.exchange import SimulatedExchange
from bot.sim.triggers import TriggerSeries, advance, process_bar
from tests.conftest import T0, long_btc_with_stop, make_exchange
from tests.unit.test_cross_liquidation import open_book
from tests.unit.test_sim_exchange import bar, market, stop

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def _opened(
    instruments: dict[str, Instrument], side: OrderSide, leverage: int
) -> SimulatedExchange:
    """0.1 BTC bought (or sold) at a mark of 60,000, isolated, no slippage."""
    ex, _ = make_exchange(instruments)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, leverage)
    ex.place_order(market("e1", side, "0.1"))
    return ex


def _mark_and_last(
    ex: SimulatedExchange, mark: tuple[str, str, str, str], last: tuple[str, str, str]
) -> None:
    """One mark bar (open, high, low, close) with the last-trade candle (open, high, low) of
    the same minute beside it."""
    o, h, low, c = (D(x) for x in mark)
    lo, lh, ll = (D(x) for x in last)
    process_bar(ex, BTC, ex.clock.now_ms(), o, h, low, c, last=(lo, lh, ll))


# -- a level touched exactly ---------------------------------------------------------------------


def test_a_stop_fires_on_a_bar_whose_low_touches_its_trigger(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant t_fires_low (``low < trig``): a sell STOP_MARKET triggers when the mark <=
    stopPrice (Binance). A long of 0.1 from 60,000 with its stop at 58,000: a bar down to
    58,000.1 (one tick above) leaves it resting, a bar down to exactly 58,000 fills it there:
    0.1 x (58,000 - 60,000) = -200. Missed, the position rode on below its stop."""
    ex = long_btc_with_stop(instruments, D(58000))
    bar(ex, "59000", "59500", "58000.1", "58500")
    assert "sl" in ex.resting[BTC]
    bar(ex, "58500", "59000", "58000", "58200")
    assert ex.orders["sl"].status is OrderStatus.FILLED
    assert (ex.fills[-1].price, ex.fills[-1].realized_pnl) == (D(58000), D(-200))


def test_a_bar_whose_low_touches_the_liquidation_price_liquidates(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant t_liq_lt (``low < liq`` / ``h > liq``): a position is liquidated when the mark
    reaches its liquidation price. 20x isolated long of 0.1 from 60,000: margin 300,
    maintenance rate 0.4 %, liquidation at (6,000 - 300) / (0.1 x 0.996) = 57,228.92. A bar
    down to a tick above leaves it; a bar down to exactly that price liquidates it."""
    ex = _opened(instruments, OrderSide.BUY, 20)
    liq = ex.book.liquidation_price(BTC, ex.marks)
    assert liq is not None
    assert round(liq, 2) == D("57228.92")
    bar(ex, "60000", "60000", str(liq + D("0.1")), "59000")
    assert ex.book.positions[BTC].qty == D("0.1")
    bar(ex, "59000", "59000", str(liq), "58000")
    assert ex.book.positions[BTC].qty == 0
    assert [e.kind for e in ex.events] == ["liquidation"]


# -- the order of what fires within one bar ------------------------------------------------------


def test_a_stop_fires_before_a_take_profit_nearer_the_open(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant t_tp_last (stops and take-profits ranked by distance alone): the path inside a
    bar is unknown, and the simulation takes the pessimistic one, stop first (README). A long
    of 0.1 from 60,000, take-profit at 61,500 (500 from the open at 61,000) and stop at 58,000
    (3,000 from it), both inside the bar: the stop fills, 0.1 x -2,000 = -200, and the
    take-profit expires with nothing left to reduce. By distance the take-profit's +150 was
    booked instead. (tests/unit/test_sim_exchange.py's same-bar test has both levels equally
    far, where the order they were placed in decides.)"""
    ex = long_btc_with_stop(instruments, D(58000))
    ex.place_order(stop("tp", OrderSide.SELL, "0.1", "61500", tp=True))
    bar(ex, "61000", "62000", "57000", "60000")
    assert ex.orders["sl"].status is OrderStatus.FILLED
    assert ex.orders["tp"].status is OrderStatus.CANCELED
    assert ex.fills[-1].realized_pnl == D(-200)


# -- where a stop-market fills: the book, not the mark -------------------------------------------


def test_a_shorts_stop_buys_where_the_book_was_when_the_mark_crossed(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant t_ref_buy (a buy stop filled at its trigger whatever the book): a short of 0.1
    from 60,000, buy stop at 62,000. The mark bar runs 60,000 -> 64,000 and crosses the
    trigger half-way up its path; the last-trade candle beside it runs 60,000 -> 68,000, half-
    way up is 64,000: the stop buys there (fill_reference, as a sell stop does the other way),
    0.1 x -4,000 = -400, not at 62,000 (-200: 200 USDT flattered)."""
    ex = _opened(instruments, OrderSide.SELL, 5)
    ex.place_order(stop("sl", OrderSide.BUY, "0.1", "62000"))
    _mark_and_last(ex, ("60000", "64000", "60000", "63000"), ("60000", "68000", "60000"))
    assert ex.orders["sl"].status is OrderStatus.FILLED
    assert (ex.fills[-1].price, ex.fills[-1].realized_pnl) == (D(64000), D(-400))


def test_a_gap_through_a_stop_fills_at_the_books_open_not_the_marks(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant t_ref_gap (across a gap, the fill referenced to the mark's open): a long of 0.1
    from 60,000 with its stop at 58,000. The mark bar opens at 57,000, through the stop; the
    last-trade candle opens at 55,000: the stop sells against the book, at 55,000 (0.1 x
    -5,000 = -500), not at the mark's 57,000 (-300: 200 USDT flattered)."""
    ex = long_btc_with_stop(instruments, D(58000))
    _mark_and_last(ex, ("57000", "57500", "56500", "57000"), ("55000", "57500", "54000"))
    assert ex.orders["sl"].status is OrderStatus.FILLED
    assert (ex.fills[-1].price, ex.fills[-1].realized_pnl) == (D(55000), D(-500))


# -- the search between two ticks ----------------------------------------------------------------


def _minutes(*closes: float) -> TriggerSeries:
    """Flat one-minute mark bars from T0, one at each price."""
    c = np.array(closes)
    ts = T0 + 60_000 * np.arange(len(c), dtype=np.int64)
    return TriggerSeries(ts, c, c.copy(), c.copy(), c.copy(), 60_000, "mark")


def test_the_replay_stops_at_the_bar_that_liquidates_a_position_without_a_stop(
    instruments: dict[str, Instrument],
) -> None:
    """Mutants t_bounds_liq and t_bounds_liq_s (trigger_bounds without a long's, a short's,
    liquidation price): between two ticks the replay searches the bars vectorised for the
    first that reaches a level (bot.sim.triggers.advance), then runs that bar alone. 20x
    isolated, 0.1 BTC from 60,000, no stop resting: the long's liquidation is at 57,228.92,
    the short's at (6,000 + 300) / (0.1 x 1.004) = 62,749.00. The third minute trades at
    56,700 (the short's case: 63,300): liquidated there. Searched for resting orders' triggers
    alone, the bar was skipped and the position lived on beyond its liquidation price."""
    for side, far in ((OrderSide.BUY, 56700.0), (OrderSide.SELL, 63300.0)):
        ex = _opened(instruments, side, 20)
        assert ex.resting[BTC] == {}
        advance(ex, {BTC: _minutes(60000.0, 60000.0, far)}, {}, T0 + 3 * 60_000)
        assert ex.book.positions[BTC].qty == 0, side
        [liquidation] = [f for f in ex.fills if f.liquidation]
        assert liquidation.timestamp_ms == T0 + 2 * 60_000, side


# -- a cross account under its maintenance at a bar's open ---------------------------------------
# process_bar's own account check (_cross_gap). Within advance() the search on the account's
# joint path (bot/sim/account_watch.py) finds these liquidations first, at the same prices;
# process_bar must not depend on it.


def test_a_cross_account_under_maintenance_at_every_price_is_liquidated_at_the_open() -> None:
    """Mutant t_cross_gap_off (no account check at a bar's open): cross, 10,000 USDT, fee-free:
    short 0.1 BTC @ 60,000 beside a long of 10 ETH @ 3,000. ETH's bar of this minute opens at
    100 (``others``: the venue measures the account on every contract's mark of the moment),
    BTC's at 59,800. At those opens: 10,000 + 0.1 x 200 - 10 x 2,900 = -18,980, under the
    maintenance margin: the account is liquidated there, both legs at their opens, and the
    insurance fund takes the 18,980 beyond the wallet. No BTC price saves the account (the
    short gains 6,000 at most), so BTC's own liquidation price is "now", the mark before the
    bar (60,000): the per-contract check alone liquidated it only when the bar later reached
    60,000, buying BTC back at 60,000 (20 USDT more lost)."""
    ex = open_book({BTC: (D("-0.1"), D(60000)), ETH: (D(10), D(3000))}, "10000", MarginMode.CROSS)
    ts = T0 + 60_000
    process_bar(ex, BTC, ts, D(59800), D(60300), D(59700), D(60100), others={ETH: D(100)})
    liquidated = {f.symbol: f.price for f in ex.fills if f.liquidation}
    assert liquidated == {BTC: D(59800), ETH: D(100)}
    assert ex.book.wallet == 0
    assert ex.insurance_shortfall == D(18980)


def test_equity_at_exactly_the_maintenance_margin_liquidates_the_cross_account() -> None:
    """Mutant t_acct_lt (``equity < mm`` in _account_under_maintenance): the venue liquidates
    when the margin balance is at (not only below) the maintenance margin, as the per-contract
    check does (a low AT the liquidation price liquidates). Cross, 5,100 USDT, fee-free: long
    0.5 BTC @ 60,000. BTC's bar opens at 50,000: equity 5,100 - 0.5 x 10,000 = 100 and
    maintenance 0.4 % x 0.5 x 50,000 = 100. The bar of ETH, which the account does not hold,
    of the same minute is read first (its ``others``: BTC's open): the account is liquidated at
    that moment, at BTC's open, whichever contract's bar the replay reads first."""
    ex = open_book({BTC: (D("0.5"), D(60000))}, "5100", MarginMode.CROSS)
    ex.marks[ETH] = D(3000)
    ts = T0 + 60_000
    process_bar(ex, ETH, ts, D(3000), D(3000), D(3000), D(3000), others={BTC: D(50000)})
    assert ex.book.positions[BTC].qty == 0
    [liquidation] = [f for f in ex.fills if f.liquidation]
    assert (liquidation.symbol, liquidation.price) == (BTC, D(50000))
