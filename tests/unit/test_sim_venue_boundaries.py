"""Boundaries of the simulated venue's order checks and of the cross liquidation price it
reports (bot/sim/exchange.py, bot/sim/book.py) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)

The simulation is only as honest as its venue: an order it accepts that Binance refuses, or a
liquidation price it reports farther from the mark than Binance's, shows in a backtest (and in
paper trading) a book the live venue would not let exist."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.domain.enums import MarginMode, OrderSide
from bot.domain.instrument import Instrument
from bot.domain.margin import cross_maintenance
from bot.errors import InsufficientMargin, InvalidQuantity, OrderRejected
from bot.sim.exchange import SimulatedExchange
from tests.conftest import make_exchange
from tests.unit.test_cross_liquidation import KNOWN, open_book
from tests.unit.test_sim_exchange import market, stop

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def _long(
    instruments: dict[str, Instrument], qty: str, *, balance: str = "10000"
) -> SimulatedExchange:
    """A BTC long of ``qty`` bought at a mark of 60,000 (5x, isolated, no slippage)."""
    ex, _ = make_exchange(instruments, balance=balance)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 5)
    ex.place_order(market("e1", OrderSide.BUY, qty))
    return ex


# -- what the venue accepts ----------------------------------------------------------------------


def test_a_conditional_order_at_the_mark_is_refused_as_triggering_at_once(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant e_not_trig_ge (``trig > mark`` / ``trig < mark`` in _check_not_triggered): Binance
    refuses a conditional order that would trigger at once (-2021), and a trigger AT the mark
    is one (a sell STOP_MARKET triggers when the mark <= stopPrice). Accepted, the simulation
    kept a long's stop placed at the mark resting, where the venue refuses it and the engine
    must place another: the position looked protected in the replay and is not live."""
    ex = _long(instruments, "0.1")
    for req in (
        stop("sl", OrderSide.SELL, "0.1", "60000"),
        stop("tp", OrderSide.SELL, "0.1", "60000", tp=True),
    ):
        with pytest.raises(OrderRejected) as err:
            ex.place_order(req)
        assert err.value.code == -2021
    assert ex.resting[BTC] == {}
    # One tick (0.1) away on the side each waits for, both rest.
    ex.place_order(stop("sl", OrderSide.SELL, "0.1", "59999.9"))
    ex.place_order(stop("tp", OrderSide.SELL, "0.1", "60000.1", tp=True))
    assert sorted(ex.resting[BTC]) == ["sl", "tp"]


def test_a_reduce_only_close_below_the_minimum_notional_is_accepted(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant e_notional_ro (the minimum notional applied to reduce-only orders too): Binance
    exempts reduce-only orders from MIN_NOTIONAL (-4164 "... unless you choose reduce only",
    shared/notes/exchange-facts.md §4.4). Closing half of a 0.002 BTC long, 0.001 x 60,000 =
    60 USDT under BTC's minimum of 100, must go through, or a simulated cut or flatten leaves
    a position the live venue closes."""
    ex = _long(instruments, "0.002")  # 120 USDT: above the minimum
    ex.place_order(market("r1", OrderSide.SELL, "0.001", reduce=True))
    assert ex.book.positions[BTC].qty == D("0.001")
    # The same 60 USDT without reduce-only is refused.
    with pytest.raises(InvalidQuantity) as err:
        ex.place_order(market("x", OrderSide.BUY, "0.001"))
    assert err.value.code == -4164
    assert ex.book.positions[BTC].qty == D("0.001")


def test_adding_to_a_position_is_checked_for_margin_like_opening_it(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant e_increases (only an order from flat counted as an increase): 1,000 USDT
    isolated at 5x, a long of 0.05 BTC bought at 60,000 locks 3,000 / 5 = 600 of margin and
    pays a taker fee of 3,000 x 0.05 % = 1.5: 398.5 is left. Buying 0.05 more needs another
    600 + 1.5 = 601.5: refused -2019, as Binance does. With the checks skipped for an add, the
    simulation carried 6,000 USDT of BTC at 5x on 1,000 and reported its PnL."""
    ex = _long(instruments, "0.05", balance="1000")
    assert ex.book.wallet == D("998.5")
    with pytest.raises(InsufficientMargin) as err:
        ex.place_order(market("e2", OrderSide.BUY, "0.05"))
    assert err.value.code == -2019
    assert ex.book.positions[BTC].qty == D("0.05")
    assert ex.book.wallet == D("998.5")


# -- the cross liquidation price the venue reports -----------------------------------------------


def test_a_cross_liquidation_price_counts_the_other_legs_maintenance() -> None:
    """Mutant b_cross_mm (the other positions' maintenance left out of Book.liquidation_price):
    cross, 3,000 USDT, fee-free: long 0.5 BTC @ 60,000 and long 10 ETH @ 3,000, ETH's mark at
    3,000. BTC's liquidation price P is where the whole account's equity meets its whole
    maintenance (Binance's LP formula: WB - TMM1 + UPNL1 with TMM1 the OTHER positions'
    maintenance): 3,000 + 0.5 (P - 60,000) = 0.004 x 0.5 P + 0.004 x 30,000 (ETH's 120), so
    P = 27,120 / 0.498 = 54,457.83. Without ETH's 120: 27,000 / 0.498 = 54,216.87, 241 USDT
    farther: a stop the engine places between the two is below the real liquidation."""
    ex = open_book({BTC: (D("0.5"), D(60000)), ETH: (D(10), D(3000))}, "3000", MarginMode.CROSS)
    liq = ex.book.liquidation_price(BTC, ex.marks)
    assert liq is not None
    assert liq == pytest.approx(D("54457.8313"), abs=D("0.0001"))
    # At that price the account's equity is its maintenance margin, both legs' together.
    marks = {BTC: liq, ETH: D(3000)}
    maintenance = sum(
        (cross_maintenance(KNOWN[s], p.qty, p.entry_price, marks[s]))
        for s, p in ex.book.positions.items()
        if p.qty
    )
    assert abs(ex.book.equity(marks) - maintenance) < D("0.000001")
    # As the engine reads it: on the tick, toward the mark.
    assert ex.fetch_positions([BTC])[BTC].liquidation_price == D("54457.9")


def test_a_cross_short_below_maintenance_at_every_price_is_due_at_the_mark() -> None:
    """Mutant b_cross_exc (``return None`` where no price of the contract brings the account
    back above its maintenance): cross, 10,000 USDT: short 0.1 BTC @ 60,000 beside a long of
    10 ETH bought at 3,000, whose mark fell to 100 (-29,000). BTC falling to 0 would gain
    6,000 at most: the equity stays below 10,000 - 29,000 + 6,000 < 0 at every BTC price. The
    account is due for liquidation now: its liquidation price is BTC's mark. Reported as None
    ("no liquidation price"), the engine saw no bound at all and held any stop for valid."""
    ex = open_book({BTC: (D("-0.1"), D(60000)), ETH: (D(10), D(3000))}, "10000", MarginMode.CROSS)
    ex.marks[ETH] = D(100)  # read by hand, no bar processed (as a price feed sets it)
    assert ex.book.liquidation_price(BTC, ex.marks) == D(60000)
    assert ex.fetch_positions([BTC])[BTC].liquidation_price == D(60000)
