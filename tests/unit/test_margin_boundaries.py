"""Boundaries of the margin cap (bot/risk/margin_cap.py) and the gross cap (bot/risk/gross.py)
that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)

The margin cap exists because the venue refuses an increase whose initial margin and fee
exceed the available balance (Binance -2019, Bybit 110007; the simulated exchange models it):
refused, the position stayed at its old size tick after tick. Each test sizes a fully bound
increase with the cap and sends it as the engine does to the simulated venue, whose fill
slippage equals the sizing's allowance (10 bps): nothing may be refused."""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.decision import Decision
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide
from bot.domain.instrument import Instrument
from bot.engine.planner import market_order
from bot.risk.gross import cap_to_gross
from bot.sim.exchange import SimulatedExchange
from tests.unit.test_margin_cap import SYMBOLS, decision, exchange, send_as_the_engine, size

BTC, ETH, SOL = SYMBOLS


def _hold(ex: SimulatedExchange, sym: str, qty: str, setting: int) -> None:
    ex.set_leverage(sym, setting)
    side = OrderSide.BUY if D(qty) > 0 else OrderSide.SELL
    ex.place_order(
        market_order("h-1", sym, side, OrderPurpose.ENTRY, abs(D(qty)), reduce_only=False)
    )


def _fully_bound(ex: SimulatedExchange, wanted: list[Decision]) -> list[Decision]:
    available = ex.fetch_balance().available
    assert available is not None
    sized = size(wanted, ex, available)
    assert sized != wanted  # the cap binds
    return sized


def test_entries_at_high_leverage_fit_their_taker_fees(instruments: dict[str, Instrument]) -> None:
    """Mutant m_unit_fee (the taker fee left out of what a unit of new quantity takes): at 20x
    the fee (0.05 % of the notional) is 2.5 % of the margin at setting 50, 25 times the 0.1 %
    kept free. In
    cross margin ETH's entry pays its fee from the wallet and its fill 10 bps away from the mark
    is an unrealised loss at once; SOL's entry after it, sized without ETH's fee, was refused
    for margin by the venue."""
    ex = exchange(D(1000), MarginMode.CROSS, slippage_bps=D(10))
    wanted = [decision(ETH, D(16), D(50)), decision(SOL, D(2), D(50))]
    sized = size(wanted, ex, ex.fetch_balance().available)
    assert send_as_the_engine(ex, sized) == []
    assert D(13) < sized[0].target_qty < D(16)  # cut a little: the setting stays high (44)


def test_a_cross_close_frees_its_margin_less_its_fee_and_slippage(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant m_freed_cross (a cross reduction frees its whole initial margin, fee and fill
    slippage not taken off): ETH (10 at setting 20, 30,000 of notional) closes to fund SOL's
    entry (setting 2: its own allowances are small); counted as freeing its 1,500 of margin
    whole, the entry was sized on a balance the close does not give back (it pays the taker fee
    and fills 10 bps away from the mark), and the venue refused it."""
    ex = exchange(D(2000), MarginMode.CROSS, slippage_bps=D(10))
    _hold(ex, ETH, "10", 20)
    sized = _fully_bound(ex, [decision(ETH, D(0), D(0)), decision(SOL, D(30), D("0.75"))])
    assert sized[0].target_qty == 0
    assert send_as_the_engine(ex, sized) == []


def test_an_isolated_close_frees_its_margin_at_the_worst_fill_less_its_fee(
    instruments: dict[str, Instrument],
) -> None:
    """Mutants m_freed_iso_exit (the closing fill's PnL at the mark, not at the worst fill) and
    m_freed_iso_fee (the taker fee not taken off): the same in isolated margin."""
    ex = exchange(D(2000), MarginMode.ISOLATED, slippage_bps=D(10))
    _hold(ex, ETH, "10", 20)
    sized = _fully_bound(ex, [decision(ETH, D(0), D(0)), decision(SOL, D(30), D("0.75"))])
    assert send_as_the_engine(ex, sized) == []


def test_a_reduction_within_the_rebalance_tolerance_frees_nothing(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant m_leg_tol (every partial reduction counted as freeing margin): ETH's cut of 4 %
    is within the 5 % tolerance, so the planner does not send it; counted as freeing its
    margin, SOL's entry was sized on 60 that never came back, and the venue refused it."""
    for mode in MarginMode:
        ex = exchange(D(2000), mode, slippage_bps=D(10))
        _hold(ex, ETH, "1", 2)
        sized = _fully_bound(ex, [decision(ETH, D("0.96"), D(1)), decision(SOL, D(400), D(20))])
        assert send_as_the_engine(ex, sized) == [], mode
        assert ex.fetch_positions([ETH])[ETH].qty == D(1)  # the cut was not traded


def test_positions_held_without_a_decision_count_in_the_gross_cap(
    instruments: dict[str, Instrument],
) -> None:
    """Mutants x_fixed_check and x_fixed_room (the gross cap without ``fixed_notional``, the
    positions held without a decision this tick): 20,000 held elsewhere, a cap of 60,000 and
    an increase of 50,000; ignored, the increase went out whole (or scaled into the cap
    without the 20,000), the gate then refused it order by order (the failure the cap was
    written for: the first contracts get their size, the last nothing) or, where the gate
    measures no more than the cap, the book ended above max_gross_leverage."""
    prices = {BTC: D(50000)}
    for fixed in (D(20000), D(9000)):
        [out] = cap_to_gross([decision(BTC, D(1), D(5))], {}, prices, instruments, D(60000), fixed)
        assert fixed + abs(out.target_qty) * prices[BTC] <= D(60000), fixed
