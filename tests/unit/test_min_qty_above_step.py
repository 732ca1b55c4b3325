"""Contracts whose minimum order is above their quantity step (Binance SPELL: step 1, minQty
100; LAB and TUT the same shape in the bundled snapshot).

The venue refuses every order below the minimum, reduce-only ones too (Binance LOT_SIZE; only
MIN_NOTIONAL exempts reduce-only orders). The bot used to plan reductions of 2 to 89 SPELL,
refused every hour for days while the position stayed above what the loss budget allowed, and
to cut sizes to slivers below the minimum (the loss budget cut 250 to 97: no order can close
97, nor, without a close-position stop, protect it). A reduction is now rounded toward less
exposure into an order the venue accepts, and a size cut below the minimum is none.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D

from hypothesis import example, given
from hypothesis import strategies as st

from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.domain.decision import Decision
from bot.domain.enums import EventKind, MarginMode, OrderPurpose, OrderSide
from bot.engine.account import AccountView
from bot.engine.contracts import ContractSpec
from bot.engine.planner import exchange_setting, market_order, plan_size, stop_sizing
from bot.engine.protection import secure_decision
from bot.engine.tick import Engine
from bot.instruments import load_instruments
from bot.risk.gross import cap_to_gross
from bot.risk.loss_budget import cap_to_loss_budget
from bot.risk.margin_cap import cap_to_margin
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0
from tests.unit.test_engine import BTC, LIMITS, ROOT, FakeMarket

BUNDLED = load_instruments("binanceusdm")
# SPELL's step and minimum, priced near 105 here (its own tick is 1e-7 at ~0.0005)
SPELL = replace(BUNDLED["SPELL/USDT:USDT"], tick_size=D("0.0001"))
SYM = SPELL.symbol
MARK = D(105)


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, purpose: OrderPurpose) -> str:
        self.n += 1
        return f"t-{purpose.value}-{self.n}"


def decision(qty: str, stop: str | None = "100", sym: str = SYM, lev: str = "2") -> Decision:
    return Decision(
        symbol=sym,
        direction=1 if D(qty) > 0 else 0,
        target_leverage=D(lev),
        target_qty=D(qty),
        stop_loss=D(stop) if stop else None,
        take_profit=None,
        reason="policy",
    )


def test_bundled_contracts_have_minimums_above_their_step() -> None:
    above = {s for s, i in BUNDLED.items() if i.min_qty > i.step_size}
    assert {"SPELL/USDT:USDT", "LAB/USDT:USDT", "TUT/USDT:USDT"} <= above
    assert (SPELL.step_size, SPELL.min_qty) == (D(1), D(100))


@given(held=st.integers(100, 5000), cut=st.integers(1, 5000))
@example(held=191, cut=65)  # the reviewer's case: a close (191 - 100 leaves 91)
@example(held=250, cut=153)  # 97 would remain: a close
@example(held=250, cut=50)  # widened to the minimum, 150 remain
def test_a_reduction_is_an_order_the_venue_accepts_and_leaves_no_sliver(
    held: int, cut: int
) -> None:
    cut = min(cut, held)
    amount = SPELL.reduction(D(held), D(cut))
    assert cut <= amount <= held  # at least as asked: toward less exposure
    assert amount >= SPELL.min_qty  # the venue accepts it
    assert held - amount == 0 or held - amount >= SPELL.min_qty  # no sliver left


def test_where_the_minimum_is_the_step_a_reduction_is_the_cut_rounded_up() -> None:
    btc = BUNDLED[BTC]
    assert btc.min_qty == btc.step_size
    assert btc.reduction(D("0.5"), D("0.1234")) == D("0.124")
    assert btc.reduction(D("0.5"), D("0.5")) == D("0.5")
    assert btc.reduction(D("0.5"), D(0)) == D(0)
    # below the minimum no order can trade any of it
    assert SPELL.reduction(D(97), D(10)) == D(0)


def test_a_cut_below_the_minimum_is_widened_to_the_minimum() -> None:
    plan = plan_size(decision("200"), D(250), D(2), SPELL, MARK, D(0), Ids())
    assert [(r.amount, r.reduce_only) for r in plan.reduce] == [(D(100), True)]
    assert plan.remainder == 0
    assert "reduction 50 of position 250 widened to 100" in plan.rounded


def test_a_cut_that_would_leave_less_than_the_minimum_closes_the_position() -> None:
    # the reviewer's case: 191 held, the loss budget allows 126; 65 is below the minimum and
    # 100 would leave 91, which no order could close
    plan = plan_size(decision("126"), D(191), D(2), SPELL, MARK, D(0), Ids())
    assert [(r.amount, r.reduce_only) for r in plan.reduce] == [(D(191), True)]
    assert "widened to 191 (closed)" in plan.rounded
    # a cut of 153 from 250 would leave 97
    plan = plan_size(decision("97"), D(250), D(2), SPELL, MARK, D(0), Ids())
    assert [r.amount for r in plan.reduce] == [D(250)]
    # a cut the venue accepts, leaving at least the minimum, is traded as asked
    plan = plan_size(decision("120"), D(250), D(2), SPELL, MARK, D(0), Ids())
    assert ([r.amount for r in plan.reduce], plan.rounded) == ([D(130)], "")


def test_the_loss_budget_cuts_a_size_below_the_minimum_to_none() -> None:
    [cut] = cap_to_loss_budget([decision("250")], {SYM: MARK}, {SYM: SPELL}, D(500), D("0.001"))
    assert cut.target_qty == 0  # not 97: no order can carry it
    assert cut.stop_loss is None
    assert cut.reason.endswith("size cut to 0 (97 is below the exchange's minimum order 100)")
    # from a held 250 the plan closes it, and nothing is left to protect
    plan = plan_size(cut, D(250), D(2), SPELL, MARK, D(0), Ids())
    assert [r.amount for r in plan.reduce] == [D(250)]
    # a budget that leaves the minimum or more cuts as before
    [kept] = cap_to_loss_budget([decision("250")], {SYM: MARK}, {SYM: SPELL}, D(700), D("0.001"))
    assert SPELL.min_qty <= kept.target_qty < 250
    assert stop_sizing(kept.target_qty, SPELL, close_position=False).placeable


def test_the_gross_cap_opens_no_position_below_the_minimum() -> None:
    # 250 at 105 is 26,250 of notional; a cap of 10,000 scales it to 95
    [new] = cap_to_gross([decision("250")], {}, {SYM: MARK}, {SYM: SPELL}, D(10_000))
    assert new.target_qty == 0
    assert new.reason.endswith("(95 is below the exchange's minimum order 100)")
    # a held position is never cut by the cap: its increase is scaled, the held part kept
    [grown] = cap_to_gross([decision("250")], {SYM: D(60)}, {SYM: MARK}, {SYM: SPELL}, D(10_000))
    assert grown.target_qty >= 60


def test_the_margin_cap_opens_no_position_below_the_minimum() -> None:
    ex = SimulatedExchange(
        {SYM: SPELL}, SimClock(T0), starting_balance=D(900), margin_mode=MarginMode.ISOLATED
    )
    ex.set_mark(SYM, MARK)
    wanted = [decision("1000", lev="4")]

    def setting_of(d: Decision, price: D) -> int:
        return exchange_setting(d.target_leverage, SPELL, abs(d.target_qty) * price)

    [out] = cap_to_margin(
        wanted,
        ex.fetch_positions([SYM]),
        {SYM: MARK},
        {SYM: MARK},
        {SYM: SPELL},
        ex.fetch_balance().available,
        setting_of=setting_of,
        slippage=D("0.001"),
        tolerance=D("0.05"),
    )
    assert out.target_qty == 0
    assert "is below the exchange's minimum order 100)" in out.reason


def test_a_size_below_the_minimum_is_said_to_be_so_not_a_liquidation_problem() -> None:
    acct = AccountView(
        wallet=D(10000), positions={}, resting={}, marks={SYM: MARK}, available=D(10000)
    )
    out = secure_decision(
        decision("93", lev="0.99"),
        acct,
        {SYM: SPELL},
        mark=MARK,
        buffer=D("7.79"),
        margin_mode=MarginMode.ISOLATED,
    )
    # a stop at 100 rests far above the liquidation (~53) at any size up to 100: the minimum
    # is the cause
    assert out.target_qty == 0
    assert out.reason == "policy; size 93 below the exchange minimum 100 -> no position"


def test_the_engine_cuts_such_a_position_with_orders_the_venue_accepts() -> None:
    """On the simulated venue, which refuses an order below the minimum as Binance does: a
    position above the notional cap (followed: opened by hand) is cut at once, no order
    refused, nothing left below the minimum."""
    inst = replace(BUNDLED[BTC], min_qty=D("0.1"))  # BTC with a minimum 100 steps above its step
    instruments = {BTC: inst}
    clock = SimClock(T0)
    ex = SimulatedExchange(
        instruments, clock, starting_balance=D(10_000), margin_mode=MarginMode.ISOLATED
    )
    market = FakeMarket()
    last, _ = market.last_price(BTC, T0) or (D(0), 0)
    ex.set_mark(BTC, last)
    ex.set_leverage(BTC, 5)
    held = D("0.19")
    ex.place_order(
        market_order("hand-1", BTC, OrderSide.BUY, OrderPurpose.ENTRY, held, reduce_only=False)
    )
    cap = (D("0.15") * last).quantize(D(1))  # the position allowed: ~0.15, a cut of ~0.04
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=load_policy(ROOT / "policies" / "vol_target.toml"),
        contracts=[ContractSpec(BTC, "follow", D(125))],
        limits=replace(LIMITS, max_notional_per_contract=cap),
        account="t",
        margin_mode=MarginMode.ISOLATED,
    )
    result = engine.tick()
    assert 0 < result.decisions[0].target_qty < held
    assert not [e for e in store.events if e.kind is EventKind.REJECTED]
    # 0.1 (the minimum) would leave 0.09, below it: the position is closed
    assert ex.fetch_positions([BTC]) == {}
    widened = [e for e in store.events if "widened to 0.19 (closed)" in e.reason]
    assert len(widened) == 1
