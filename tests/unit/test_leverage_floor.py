"""Binance refuses to lower the leverage of an open isolated position (-4161 "Leverage
reduction is not supported in Isolated Margin Mode with open positions"; raising it works). The
simulator let it happen (moving margin in when free), and the engine asked for it before every
increase whose target leverage had fallen: the simulation made increases live trading could
not, and live trading recorded a refusal, and skipped the increase, every tick. An increase now
uses the setting held when it is higher, in the sizing, the margin cap and the stop's
liquidation alike; Bybit re-sizes the margin and is unchanged."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

import pytest

from bot.clock import SimClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument, MarginModel
from bot.domain.orders import OrderRequest
from bot.engine.planner import plan_size
from bot.errors import OrderRejected
from bot.instruments import load_instruments
from bot.policy.leverage import setting_floor
from bot.sim.exchange import SimulatedExchange
from tests.unit.test_planner import BTC, Ids, decision

T0 = 1_750_000_000_000


def long_at(venue: str, leverage: int, mode: MarginMode) -> SimulatedExchange:
    inst = load_instruments(venue)[BTC]
    ex = SimulatedExchange({BTC: inst}, SimClock(T0), starting_balance=D(10000), margin_mode=mode)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, leverage)
    ex.place_order(
        OrderRequest("e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.1"), False)
    )
    return ex


def test_the_simulated_binance_refuses_to_lower_an_open_isolated_positions_leverage() -> None:
    ex = long_at("binanceusdm", 10, MarginMode.ISOLATED)
    margin = ex.book.positions[BTC].isolated_margin
    with pytest.raises(OrderRejected) as refused:
        ex.set_leverage(BTC, 5)
    assert refused.value.code == -4161
    assert (ex.book.leverage[BTC], ex.book.positions[BTC].isolated_margin) == (D(10), margin)
    ex.set_leverage(BTC, 20)  # raising works
    assert ex.book.leverage[BTC] == 20


@pytest.mark.parametrize(
    ("venue", "mode"),
    [("bybit", MarginMode.ISOLATED), ("binanceusdm", MarginMode.CROSS)],
)
def test_bybit_and_cross_margin_may_lower_it(venue: str, mode: MarginMode) -> None:
    ex = long_at(venue, 10, mode)
    ex.set_leverage(BTC, 5)
    assert ex.book.leverage[BTC] == 5


def test_the_floor_is_the_setting_of_an_open_isolated_binance_position(btc: Instrument) -> None:
    ex = long_at("binanceusdm", 10, MarginMode.ISOLATED)
    held = ex.fetch_positions([BTC])[BTC]
    assert setting_floor(btc, held, 1) == 10
    assert setting_floor(btc, held, -1) == 1  # the other side: the position closes first
    assert setting_floor(btc, None, 1) == 1
    assert setting_floor(btc, replace(held, margin_mode=MarginMode.CROSS), 1) == 1
    bybit = replace(btc, margin_model=MarginModel.BYBIT_UTA)
    assert setting_floor(bybit, held, 1) == 1


def test_an_increase_keeps_the_higher_setting_held(btc: Instrument) -> None:
    """Target 2x (setting 2) on a position held at 10x: the increase is sent, and no setting
    change is asked for (it would be refused, and the increase with it)."""
    plan = plan_size(decision("0.2", lev="2"), D("0.1"), D(10), btc, D(60000), D("0.1"), Ids(), 10)
    assert plan.leverage is None
    [order] = plan.increase
    assert order.amount == D("0.1")
    # without a floor (flat, Bybit, cross) the setting follows the target, as before
    plan = plan_size(decision("0.2", lev="2"), D("0.1"), D(10), btc, D(60000), D("0.1"), Ids())
    assert plan.leverage == 3  # (one above the target's ceiling: bot.policy.leverage)
    # raising is never held back
    plan = plan_size(decision("0.2", lev="20"), D("0.1"), D(10), btc, D(60000), D("0.1"), Ids(), 10)
    assert plan.leverage == 21
