"""Bybit takes a liquidated position over at its bankruptcy price: the whole margin behind it is
lost, what a better fill leaves going to Bybit's insurance fund
(https://www.bybit.com/en/help-center/article/Liquidation-Process-USDT-Contract). The simulator
charged only its liquidation fee (the taker fee, 0.055 %) at the liquidation price, and handed
the trader back the rest of the maintenance margin: a kinder liquidation than the venue's, more
so at higher leverage. Binance keeps its clearance fee, capped at what the margin holds."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.clock import SimClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from bot.sim.triggers import process_bar

BTC = "BTC/USDT:USDT"
T0 = 1_750_000_000_000 - 1_750_000_000_000 % 3_600_000


def long_at_10x(venue: str, mode: MarginMode, balance: str) -> SimulatedExchange:
    inst = load_instruments(venue)[BTC]
    ex = SimulatedExchange({BTC: inst}, SimClock(T0), starting_balance=D(balance), margin_mode=mode)
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 10)
    ex.place_order(
        OrderRequest("e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.1"), False)
    )
    return ex


def liquidate(ex: SimulatedExchange) -> None:
    liq = ex.book.liquidation_price(BTC, ex.marks)
    assert liq is not None
    process_bar(ex, BTC, T0, D(60000), D(60000), liq - 1, liq - 1)  # the mark crosses it
    assert ex.book.positions[BTC].qty == 0


@pytest.mark.parametrize(("leverage", "margin"), [(10, D(600)), (50, D(120))])
def test_a_bybit_isolated_liquidation_loses_the_whole_position_margin(
    leverage: int, margin: D
) -> None:
    ex = long_at_10x("bybit", MarginMode.ISOLATED, "10000")
    if leverage != 10:
        ex.set_leverage(BTC, leverage)
    assert ex.book.positions[BTC].isolated_margin == margin  # 6 000 notional / leverage
    wallet = ex.book.wallet
    liquidate(ex)
    assert wallet - ex.book.wallet == margin
    [event] = [e for e in ex.events if e.kind.value == "liquidation"]
    assert event.amount is not None


def test_a_bybit_cross_liquidation_empties_the_wallet() -> None:
    ex = long_at_10x("bybit", MarginMode.CROSS, "1000")  # 6 000 notional on a 1 000 wallet
    liquidate(ex)
    assert ex.book.wallet == 0
    assert ex.insurance_shortfall == 0  # nothing beyond the wallet: the venue kept the rest


def test_binance_keeps_its_clearance_fee_only() -> None:
    """On Binance's lowest tier the 1.25 % clearance fee is larger than the margin left at the
    liquidation price: the position's margin is gone there too, as before."""
    ex = long_at_10x("binanceusdm", MarginMode.ISOLATED, "10000")
    margin = ex.book.positions[BTC].isolated_margin
    wallet = ex.book.wallet
    liquidate(ex)
    assert wallet - ex.book.wallet <= margin
