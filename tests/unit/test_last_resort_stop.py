"""A position whose stop range with the policy's liquidation buffer is empty (too close to its
liquidation price for the policy) is closed at market. Before the close, a last-resort stop
anywhere strictly between the mark and the liquidation price (the buffer waived) is placed: a
part no market order can trade (off the venue's step, below its minimum) and a position whose
close the venue refuses stay protected, not naked check after check."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from bot.config.loader import load_policy
from bot.domain.enums import EventKind, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.engine.account import AccountView
from bot.engine.contracts import ContractSpec
from bot.engine.protection import protection_gap
from bot.engine.tick import Engine
from bot.errors import OrderRejected
from bot.risk.stop_placement import is_valid_stop
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket


def held_by_hand(
    instruments: dict[str, Instrument], qty: D, side: OrderSide, *, coarser: bool
) -> tuple[Engine, SimulatedExchange, MemoryStore]:
    """``qty`` opened by hand at 20x isolated (the buffered stop range is empty) and managed by
    the bot (``follow``); ``coarser``: the venue's step and minimum then became 0.01."""
    ex, clock = make_exchange({BTC: instruments[BTC]})
    market = FakeMarket()
    px, _ = market.last_price(BTC, T0) or (D(0), 0)
    ex.set_mark(BTC, px)
    ex.set_leverage(BTC, 20)
    ex.place_order(
        OrderRequest("hand-1", BTC, side, OrderType.MARKET, OrderPurpose.ENTRY, qty, False)
    )
    if coarser:
        ex.book.instruments[BTC] = replace(instruments[BTC], step_size=D("0.01"), min_qty=D("0.01"))
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "follow", D(125))],
        limits=LIMITS,
        account="t",
    )
    return engine, ex, store


def gap(ex: SimulatedExchange) -> str | None:
    pos = ex.fetch_positions([BTC])[BTC]
    acct = AccountView(ex.book.wallet, {BTC: pos}, {BTC: ex.fetch_open_orders(BTC)}, dict(ex.marks))
    return protection_gap(
        ex.instrument(BTC),
        pos,
        acct,
        ex.book.instruments,
        acct.resting[BTC],
        close_position_stops=ex.close_position_stops,
    )


def a_valid_stop_exists(ex: SimulatedExchange) -> bool:
    pos = ex.fetch_positions([BTC])[BTC]
    mark, liq = ex.marks[BTC], pos.liquidation_price
    assert liq is not None
    inst = ex.instrument(BTC)
    trigger = inst.stop_price((mark + liq) / 2, pos.sign)
    return is_valid_stop(inst, sign=pos.sign, mark=mark, trigger=trigger, liquidation=liq)


@pytest.mark.parametrize(
    ("qty", "side"),
    [(D("0.005"), OrderSide.BUY), (D("0.123"), OrderSide.SELL)],
    ids=["below-the-minimum-long", "off-the-step-short"],
)
def test_what_no_order_can_close_keeps_a_last_resort_stop(
    instruments: dict[str, Instrument], qty: D, side: OrderSide
) -> None:
    engine, ex, store = held_by_hand(instruments, qty, side, coarser=True)
    assert a_valid_stop_exists(ex)
    for run in (engine.tick, engine.guard, engine.guard):
        run()
        held = ex.fetch_positions([BTC]).get(BTC)
        if held is None:
            continue
        assert abs(held.qty) < D("0.01")  # what an order could trade was closed
        assert gap(ex) is None, run.__name__  # the rest rests protected
    [incident] = [e for e in store.events if e.kind is EventKind.UNPROTECTED]  # once, not a loop
    assert "closing the position" in incident.reason


def test_a_position_whose_close_the_venue_refuses_rests_protected(
    instruments: dict[str, Instrument],
) -> None:
    engine, ex, _ = held_by_hand(instruments, D("0.1"), OrderSide.BUY, coarser=False)
    assert a_valid_stop_exists(ex)
    real_place = ex.place_order

    def refuse_closes(request: OrderRequest) -> Order:
        if request.purpose is OrderPurpose.CLOSE:
            raise OrderRejected("Market is closed.", code=-4400)
        return real_place(request)

    ex.place_order = refuse_closes  # type: ignore[method-assign]
    for run in (engine.tick, engine.guard):
        run()
        assert ex.fetch_positions([BTC])[BTC].qty == D("0.1")  # not closed: refused
        assert gap(ex) is None, run.__name__  # but not naked either
