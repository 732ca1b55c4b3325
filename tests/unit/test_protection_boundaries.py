"""Boundaries of the protection invariant (bot/risk/stop_placement.py is_valid_stop,
bot/engine/protection.py protection_gap) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)"""

from __future__ import annotations

from decimal import Decimal as D

from bot.domain.enums import MarginMode, OrderSide, OrderStatus, OrderType, TriggerBy
from bot.domain.instrument import Instrument
from bot.domain.orders import Order
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.protection import protection_gap
from bot.risk.stop_placement import is_valid_stop

BTC = "BTC/USDT:USDT"


def test_a_stop_at_the_liquidation_price_or_at_the_mark_does_not_protect(
    instruments: dict[str, Instrument],
) -> None:
    """Mutants sp_valid_liq (``(trigger - liquidation) * sign >= 0``) and sp_valid_mark
    (``(trigger - mark) * sign > 0``): the invariant is a stop STRICTLY between the mark and
    the liquidation price (docs/architecture.md, Invariants). A resting stop exactly at the
    liquidation price cannot fire before the venue liquidates; counted valid, the verification
    keeps it and the position is in fact unprotected."""
    inst = instruments[BTC]
    for sign, liq in ((1, D(50000)), (-1, D(70000))):
        assert not is_valid_stop(inst, sign=sign, mark=D(60000), trigger=liq, liquidation=liq)
        assert not is_valid_stop(inst, sign=sign, mark=D(60000), trigger=D(60000), liquidation=liq)
        one_in = liq + sign * inst.tick_size
        assert is_valid_stop(inst, sign=sign, mark=D(60000), trigger=one_in, liquidation=liq)


def test_a_stop_of_the_positions_size_on_the_opening_side_is_no_protection(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant p_gap_fast_side (protection_gap's "one valid stop covers it all" shortcut without
    ``o.side is closing_side(pos.qty)``): a stop-market placed by hand, reduce-only, on the mark,
    of the long's size but a BUY (it can never close the long) passed the verification
    (ensure_protected -> Engine._gap), so the guard would leave the long without a stop."""
    inst = instruments[BTC]
    pos = Position(BTC, D("0.1"), D(60000), D(5), MarginMode.ISOLATED, D(1200), D(48500))
    wrong = Order(
        "myhand-1",
        "x1",
        BTC,
        OrderSide.BUY,
        OrderType.STOP_MARKET,
        None,
        D("0.1"),
        D(0),
        OrderStatus.OPEN,
        True,
        trigger_price=D(55000),
        trigger_by=TriggerBy.MARK,
    )
    acct = AccountView(D(10000), {BTC: pos}, {BTC: [wrong]}, {BTC: D(60000)})
    assert protection_gap(inst, pos, acct, instruments, [wrong]) is not None
    right = Order(
        "myhand-2",
        "x2",
        BTC,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        None,
        D("0.1"),
        D(0),
        OrderStatus.OPEN,
        True,
        trigger_price=D(55000),
        trigger_by=TriggerBy.MARK,
    )
    assert protection_gap(inst, pos, acct, instruments, [right]) is None
