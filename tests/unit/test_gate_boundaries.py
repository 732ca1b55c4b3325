"""Boundaries of the risk gate (bot/risk/gate.py) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from bot.domain.enums import OrderPurpose, OrderSide, OrderType, TradingState
from bot.domain.orders import OrderRequest
from bot.risk.gate import Approved, Denied, OrderContext, RiskGate
from bot.risk.limits import RiskLimits

LIMITS = RiskLimits(
    max_leverage_per_contract=D(5),
    max_gross_leverage=D(6),
    max_notional_per_contract=D(50000),
    daily_loss=D("0.05"),
    max_drawdown=D("0.2"),
    stale_data_ms=7_200_000,
    max_orders_per_minute=3,
)


def ctx(
    state: TradingState = TradingState.ACTIVE, qty: str = "0", other: str = "0"
) -> OrderContext:
    return OrderContext(
        state=state,
        now_ms=0,
        monotonic_ms=0,
        data_age_ms=0,
        price=D(60000),
        position_qty=D(qty),
        sleeve_equity=D(5000),
        equity=D(10000),
        gross_notional_other=D(other),
        max_leverage_contract=D(125),
    )


def entry(side: OrderSide, amount: str) -> OrderRequest:
    return OrderRequest(
        "e", "BTC/USDT:USDT", side, OrderType.MARKET, OrderPurpose.ENTRY, D(amount), False
    )


def test_close_position_stop_passes_halted_and_reducing() -> None:
    """Mutant g_reducing_closepos (``_is_reducing`` = ``req.reduce_only`` only): the bot sends a
    close-position stop with reduce_only=False (planner._Wanted.order: ``reduce_only=not whole``,
    Binance refuses reduceOnly with closePosition). Under a halt or reducing, a position off the
    step grid would then get no stop at all."""
    stop = OrderRequest(
        "s",
        "BTC/USDT:USDT",
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        None,
        False,
        trigger_price=D(55000),
        close_position=True,
    )
    for state in (TradingState.HALTED, TradingState.REDUCING):
        assert isinstance(RiskGate(LIMITS).check(stop, ctx(state, qty="0.0105")), Approved)
    restricted = replace(ctx(qty="0.0105"), restricted="withdrawn", data_age_ms=10**9)
    assert isinstance(RiskGate(LIMITS).check(stop, restricted), Approved)


def test_a_short_entry_beyond_the_leverage_and_notional_caps_is_denied() -> None:
    """Mutant g_after_abs (no abs() in _after_notional): a short's notional is negative, so
    every size cap (leverage, gross, notional) passes any short."""
    v = RiskGate(LIMITS).check(entry(OrderSide.SELL, "0.5"), ctx())  # 30000 / 5000 = 6x > 5x
    assert isinstance(v, Denied)
    assert "leverage 6.00" in v.reason
    assert isinstance(RiskGate(LIMITS).check(entry(OrderSide.SELL, "0.4"), ctx()), Approved)


def test_an_increase_of_a_held_position_is_capped_on_the_position_after_it() -> None:
    """Mutant g_lev_eq0 (leverage check skipped when a position is held): adding 0.2 to a long
    of 0.3 gives 0.5 x 60000 / 5000 = 6x > 5x."""
    v = RiskGate(LIMITS).check(entry(OrderSide.BUY, "0.2"), ctx(qty="0.3"))
    assert isinstance(v, Denied)
    assert "leverage 6.00" in v.reason


def test_gross_leverage_counts_the_other_contracts() -> None:
    """Mutants g_gross_drop_other / g_gross_gt: the gate's gross-leverage check is never hit by
    the project's tests. 0.4 BTC = 24000 (4.8x of the sleeve: passes the contract cap) plus
    40000 on other contracts = 64000 / 10000 = 6.4x > 6x gross."""
    v = RiskGate(LIMITS).check(entry(OrderSide.BUY, "0.4"), ctx(other="40000"))
    assert isinstance(v, Denied)
    assert "gross leverage 6.40" in v.reason
    # 0.4 BTC + 34000 other = 5.8x: passes
    assert isinstance(
        RiskGate(LIMITS).check(entry(OrderSide.BUY, "0.4"), ctx(other="34000")), Approved
    )
    # just above the limit (6.2x): a cap doubled (or ignored) would let it through
    v = RiskGate(LIMITS).check(entry(OrderSide.BUY, "0.4"), ctx(other="38000"))
    assert isinstance(v, Denied)
