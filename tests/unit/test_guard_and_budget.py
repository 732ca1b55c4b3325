"""The guard's floor and first-breach search, and the loss budget in the stops, by hand."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest

from bot.domain.decision import Decision
from bot.domain.enums import OrderPurpose, OrderSide, OrderType, TradingState
from bot.domain.orders import OrderRequest
from bot.instruments import load_instruments
from bot.risk.guard import equity_floor, first_breach
from bot.risk.limits import RiskLimits
from bot.risk.loss_budget import cap_to_loss_budget, loss_at_stop
from bot.risk.state import initial_memory, update
from bot.sim.triggers import FundingTape, TriggerSeries, advance
from tests.conftest import T0, make_exchange

D = Decimal
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
LIMITS = RiskLimits(
    max_leverage_per_contract=D(5),
    max_gross_leverage=D(6),
    max_notional_per_contract=D(100000),
    daily_loss=D("0.05"),
    max_drawdown=D("0.25"),
    stale_data_ms=7_200_000,
    max_orders_per_minute=60,
)
INSTRUMENTS = load_instruments("binanceusdm")


def test_floor_is_where_update_moves_the_state() -> None:
    mem = initial_memory(D(10000), 0)
    # Day start 10,000: the daily floor 9,500 is above the drawdown floor 7,500.
    assert equity_floor(mem, LIMITS) == D(9500)
    _, above = update(mem, D("9500.01"), 1, LIMITS, [])
    _, at = update(mem, D(9500), 1, LIMITS, [])
    assert above is None
    assert at is not None
    assert at.after is TradingState.HALTED
    mem_r = replace(
        mem, state=TradingState.REDUCING, state_reason="3 failed ticks", peak_equity=D(12000)
    )
    # Reducing: a daily loss that halts still halts from it (state.update), so its floor is
    # still watched; where a daily loss only reduces, it makes the reducing its own, so the
    # floor is watched too.
    assert equity_floor(mem_r, LIMITS) == D(9500)
    _, from_reducing = update(mem_r, D(9500), 1, LIMITS, [])
    assert from_reducing is not None
    assert from_reducing.after is TradingState.HALTED
    only_reduces = replace(LIMITS, on_daily_loss="reducing")
    assert equity_floor(mem_r, only_reduces) == D(9500)
    _, stays = update(mem_r, D("9500.01"), 1, only_reduces, [])
    assert stays is None
    daily_r, recaused = update(mem_r, D(9500), 1, only_reduces, [])
    assert recaused is not None
    assert recaused.recaused
    # In the daily loss's own reducing, only the drawdown halt is left.
    assert equity_floor(daily_r, only_reduces) == D(9000)
    _, stays = update(daily_r, D("9000.01"), 1, only_reduces, [])
    assert stays is None
    assert equity_floor(replace(mem, state=TradingState.HALTED), LIMITS) is None
    assert equity_floor(None, LIMITS) is None


def test_first_breach_is_the_first_candle_at_or_under_the_floor() -> None:
    worst = np.array([9800.0, 9600.0, 9500.0, 9400.0])
    assert first_breach(worst, 9500.0) == 2
    assert first_breach(worst, 9000.0) == -1
    assert first_breach(np.zeros(0), 1.0) == -1


def test_loss_at_stop_by_hand() -> None:
    # Long 0.1 BTC, mark 60,000, stop 57,000, tick 0.1, taker fee 0.05 %:
    # 0.1 x (3,000 + 0.1 + 57,000 x (0.001 + 0.0005)) = 308.56
    btc, eth = INSTRUMENTS[BTC], INSTRUMENTS[ETH]
    assert (btc.tick_size, btc.taker_fee) == (D("0.1"), D("0.0005"))
    assert loss_at_stop(D("0.1"), D(60000), D(57000), D("0.001"), btc) == D("308.56")
    # Short 2 ETH, mark 3,000, stop 3,150, tick 0.01: 2 x (150 + 0.01 + 3,150 x 0.0015) = 309.47
    assert (eth.tick_size, eth.taker_fee) == (D("0.01"), D("0.0005"))
    assert loss_at_stop(D(-2), D(3000), D(3150), D("0.001"), eth) == D("309.47")


def test_the_loss_at_a_stop_counts_the_fill_one_tick_against_the_trader() -> None:
    """The venue trades on its tick: a stop's fill lands up to a tick beyond the modelled
    price. On a coarse tick (0.01 on a price of 0.05: 20 % of the move to a stop 0.05 away)
    the budget must count it, or every stop that fires takes the day past its limit."""
    coarse = replace(INSTRUMENTS[BTC], tick_size=D("0.01"), taker_fee=D(0))
    assert loss_at_stop(D(1000), D("0.10"), D("0.05"), D(0), coarse) == D("60.00")


def decision(sym: str, qty: str, stop: str) -> Decision:
    return Decision(
        symbol=sym,
        direction=1 if D(qty) > 0 else -1,
        target_leverage=D(3),
        target_qty=D(qty),
        stop_loss=D(stop),
        take_profit=None,
        reason="policy",
        allow_increase=True,
    )


def test_budget_cuts_every_target_by_one_factor_and_says_so() -> None:
    marks = {BTC: D(60000), ETH: D(3000)}
    ds = [decision(BTC, "0.1", "57000"), decision(ETH, "-2", "3150")]
    # If both stops fire: 308.56 + 309.47 = 618.03; 309.015 left: factor 0.5.
    out = cap_to_loss_budget(ds, marks, INSTRUMENTS, D("309.015"), D("0.001"))
    by = {d.symbol: d for d in out}
    assert by[BTC].target_qty == D("0.050")
    assert by[ETH].target_qty == D("-1.000")
    assert "loss budget" in by[BTC].reason
    assert "size cut to 0.05" in by[BTC].reason
    total = sum(
        (
            loss_at_stop(
                d.target_qty,
                marks[d.symbol],
                d.stop_loss or D(0),
                D("0.001"),
                INSTRUMENTS[d.symbol],
            )
            for d in out
        ),
        D(0),
    )
    assert total <= D("309.015")
    # Enough budget: nothing changes.
    assert cap_to_loss_budget(ds, marks, INSTRUMENTS, D(700), D("0.001")) == ds
    # No budget left: flat, no stop.
    flat = cap_to_loss_budget(ds, marks, INSTRUMENTS, D(0), D("0.001"))
    assert all(d.target_qty == 0 and d.stop_loss is None for d in flat)


def test_fixed_losses_come_off_the_budget_first() -> None:
    marks = {BTC: D(60000)}
    ds = [decision(BTC, "0.1", "57000")]
    out = cap_to_loss_budget(ds, marks, INSTRUMENTS, D(400), D("0.001"), fixed_loss=D("245.72"))
    # 154.28 left of 308.56: factor 0.5 -> 0.050 (a hair less would round down to 0.049).
    assert out[0].target_qty == D("0.050")


def test_negative_slippage_is_an_error() -> None:
    with pytest.raises(ValueError, match="slippage"):
        cap_to_loss_budget(
            [decision(BTC, "0.1", "57000")], {BTC: D(60000)}, INSTRUMENTS, D(1), D(-1)
        )


def test_a_settlement_at_the_close_of_the_guards_candle_is_paid_before_the_guard_acts() -> None:
    # A long of 1 BTC at 60,000; the 5-minute mark candle from T0 dips to 50,000 (the account
    # under the guard's floor) and closes at 59,000, where a settlement of 0.1 % falls. The
    # guard acts at that close (it halts and flattens); funding is exchanged on the position
    # held at the funding time, so the settlement comes first: 1 x 59,100 (the mark then, the
    # next bar's open) x 0.1 % = 59.10. Before, the guard's close came first and the position
    # was flat at the settlement: nothing was charged.
    ex, _ = make_exchange(INSTRUMENTS, balance="100000")
    ex.marks[BTC] = ex.lasts[BTC] = D(60000)
    ex.set_leverage(BTC, 2)
    ex.place_order(
        OrderRequest("e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D(1), False)
    )
    five = 300_000
    ts = np.array([T0, T0 + five], dtype=np.int64)
    series = {
        BTC: TriggerSeries(
            ts,
            np.array([60000.0, 59100.0]),
            np.array([60000.0, 59200.0]),
            np.array([50000.0, 59000.0]),
            np.array([59000.0, 59100.0]),
            five,
            "mark",
        )
    }
    tapes = {BTC: FundingTape(np.array([T0 + five], dtype=np.int64), np.array([0.001]))}
    hit = advance(ex, series, tapes, T0 + 2 * five, floor=ex.equity() - D(5000))
    assert hit is not None
    assert hit.ts_ms == T0 + five
    assert [(e.ts_ms, e.amount) for e in ex.events if e.kind == "funding"] == [
        (T0 + five, D("59.1"))
    ]
    assert tapes[BTC].cursor == 1  # not settled again after the guard
    assert ex.book.positions[BTC].qty == 1
