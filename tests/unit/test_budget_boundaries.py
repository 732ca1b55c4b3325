"""Boundaries of the loss budget's "book the tick leaves" measure (bot/engine/tick.py
Engine.within_loss_budget -> _over_budget, _loss_held_and_bound, _loss_after) that no other
test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)

The measure exists for one defect (tests/unit/test_budget_after_the_tick.py): a cut within the
rebalance tolerance is not traded while another contract's increase, sized on the room that
cut was to free, is; the book ends the tick over its loss budget. When the book the tick
would leave is over the budget by more than 2 %, every cut is forced (``_budget_cut``)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from bot.config.loader import load_policy
from bot.domain.decision import Decision
from bot.domain.enums import (
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TradingState,
    TriggerBy,
)
from bot.domain.instrument import Instrument
from bot.domain.orders import Order
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.ports.store import RiskMemory
from bot.risk.loss_budget import loss_at_stop
from bot.store.memory import MemoryStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import LIMITS, FakeMarket

ROOT = Path(__file__).resolve().parents[2]
BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"
MARK = {BTC: D(60000), ETH: D(3000), SOL: D(150)}
STOP = {BTC: D(50000), ETH: D(2500), SOL: D(120)}


def _engine(instruments: dict[str, Instrument]) -> Engine:
    ex, clock = make_exchange(instruments)
    for sym, px in MARK.items():
        ex.set_mark(sym, px)
    policy = load_policy(ROOT / "policies" / "vol_target.toml")
    assert policy.orders.rebalance_tolerance == D("0.1")
    return Engine(
        clock=clock,
        exchange=ex,
        market=FakeMarket(),
        store=MemoryStore(),
        policy=policy,
        contracts=[ContractSpec(s, "long", D(125)) for s in (BTC, ETH, SOL)],
        limits=LIMITS,
        account="t",
    )


def _pos(sym: str, qty: str) -> Position:
    q = D(qty)
    return Position(sym, q, MARK[sym], D(2), MarginMode.ISOLATED, abs(q) * MARK[sym] / 2, None)


def _decision(sym: str, qty: str) -> Decision:
    q = D(qty)
    return Decision(
        symbol=sym,
        direction=1 if q > 0 else -1,
        target_leverage=D(1),
        target_qty=q,
        stop_loss=STOP[sym],
        take_profit=None,
        reason="test",
    )


def _stop_order(sym: str, qty: str) -> Order:
    return Order(
        "bot-sl-1",
        "x1",
        sym,
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        OrderPurpose.STOP_LOSS,
        D(qty),
        D(0),
        OrderStatus.OPEN,
        True,
        trigger_price=STOP[sym],
        trigger_by=TriggerBy.MARK,
    )


def _loss(engine: Engine, sym: str, qty: str) -> D:
    inst = engine.instruments[sym]
    return loss_at_stop(D(qty), MARK[sym], STOP[sym], engine.limits.stop_slippage, inst)


def _memory_with_budget(equity: D, budget: D) -> RiskMemory:
    """The daily-loss floor ``budget`` below ``equity`` (the drawdown floor lower)."""
    assert budget < equity * LIMITS.max_drawdown
    day_start = (equity - budget) / (1 - LIMITS.daily_loss)
    return RiskMemory(TradingState.ACTIVE, "", equity, T0, day_start, False)


def test_a_flip_counts_at_its_new_size_in_the_bound_of_the_book_the_tick_leaves(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant b_bound_flip (the cheap bound counts a flip at the size held, not at its target):
    BTC's cut of 9 % is within the tolerance (not traded); ETH flips from a 2.5 short to a 2
    long, sized on the room BTC's cut was to free. The targets fit the budget; the book the
    tick leaves (BTC as held + ETH's new long) is 4.7 % over it. The held short loses nothing
    at the long's stop (below the mark), so with the flip counted as held the bound stayed
    under the limit, the book was never measured, no cut was forced and the tick ended over
    budget, state active: the very defect _over_budget was written for, in the flip case."""
    engine = _engine(instruments)
    positions = {BTC: _pos(BTC, "0.1"), ETH: _pos(ETH, "-2.5")}
    acct = AccountView(D(10000), positions, {}, dict(MARK))
    decisions = [_decision(BTC, "0.091"), _decision(ETH, "2")]
    budget = _loss(engine, BTC, "0.091") + _loss(engine, ETH, "2") + 1  # the targets fit
    left = _loss(engine, BTC, "0.1") + _loss(engine, ETH, "2")  # what the tick leaves
    assert left > budget * D("1.02")
    memory = _memory_with_budget(acct.equity(), budget)
    capped = engine.within_loss_budget(decisions, acct, memory, {})
    assert [c.target_qty for c in capped] == [D("0.091"), D(2)]  # nothing cut by the budget
    assert engine._budget_cut == {BTC, ETH}  # so BTC's cut is made below the tolerance


def test_the_loss_at_the_stops_of_undecided_positions_is_off_the_limit_of_the_book_the_tick_leaves(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant b_limit_fixed (``limit = budget * 1.02`` instead of ``(budget - fixed) * 1.02``):
    SOL is held without a decision this tick (its market data unreadable), its resting stop
    costs ``fixed`` of the budget. BTC's cut within the tolerance beside ETH's increase leaves
    a book over what is left of the budget; measured against the whole budget, as if SOL's
    stop cost nothing, no cut was forced and the account ended the tick over its loss limits
    if every stop fires."""
    engine = _engine(instruments)
    positions = {BTC: _pos(BTC, "0.1"), ETH: _pos(ETH, "0.5"), SOL: _pos(SOL, "10")}
    acct = AccountView(D(10000), positions, {SOL: [_stop_order(SOL, "10")]}, dict(MARK))
    decisions = [_decision(BTC, "0.091"), _decision(ETH, "2")]
    fixed = _loss(engine, SOL, "10")
    budget = _loss(engine, BTC, "0.091") + _loss(engine, ETH, "2") + fixed + 1
    left = _loss(engine, BTC, "0.1") + _loss(engine, ETH, "2")
    assert left > (budget - fixed) * D("1.02")
    assert left < budget * D("1.02")
    memory = _memory_with_budget(acct.equity(), budget)
    capped = engine.within_loss_budget(decisions, acct, memory, {})
    assert [c.target_qty for c in capped] == [D("0.091"), D(2)]
    assert engine._budget_cut == {BTC, ETH}
