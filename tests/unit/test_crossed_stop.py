"""No exposure is added on the strength of a resting stop or a leverage reading that contradicts
the mark.

Found by the venue-fuzzing review (a live bot long 0.117 BTC, stop 109901.6, mark 113988.8):
one open-orders answer listed the bot's sell stop at ten times its trigger, above the mark. The
trailing rule took it as the stop to trail from, the risk layer moved it to one tick under the
mark, the loss budget measured almost no loss at that stop, and the bot bought 0.087 more and
raised its leverage setting 3 -> 4. A leverage setting read as 30 instead of 3 did the same
through the liquidation price of the increase (the stop 40 USDT under the mark).

* the policy: a resting stop the mark has crossed is no trailing anchor (the book's contracts
  and the hedge legs);
* the risk layer: no increase is taken on a stop that had to be placed nearer the mark than
  the policy's: the size is cut to the largest whose stop rests where the policy put it, and
  not below what is held (a reduction and the held position's stop still go);
* the loss budget: a position without a decision whose resting stop reads crossed counts at the
  stop the verification places, not at none.

The same through ccxt and the loopback venues: tests/e2e/test_crossed_stop_live.py.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.clock import SimClock
from bot.config.loader import load_policy
from bot.domain.decision import Decision
from bot.domain.enums import (
    MarginMode,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    OrderType,
    TriggerBy,
)
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.domain.orders import Order
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.contracts import ContractSpec
from bot.engine.protection import secure_decision
from bot.engine.tick import FALLBACK_STOP, Engine
from bot.instruments import load_instruments
from bot.policy.decide import decide
from bot.policy.hedge import BookLeg, HedgeInputs, HedgeLeg, decide_hedge
from bot.policy.inputs import ContractView
from bot.risk.limits import RiskLimits
from bot.risk.state import initial_memory
from bot.risk.stop_placement import FittedSize, fit_size, moved_in
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0
from tests.unit.test_engine import FakeMarket

ROOT = Path(__file__).resolve().parents[2]
VOL_TARGET = load_policy(ROOT / "policies" / "vol_target.toml")
HEDGED = load_policy(ROOT / "policies" / "vol_target_hedged.toml")
BINANCE = load_instruments("binanceusdm")
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
HOUR = 3_600_000
LIMITS = RiskLimits(
    max_leverage_per_contract=D(5),
    max_gross_leverage=D(6),
    max_notional_per_contract=D(10**6),
    daily_loss=D("0.05"),
    max_drawdown=D("0.25"),
    stale_data_ms=2 * HOUR,
    max_orders_per_minute=60,
)

sides = st.sampled_from([1, -1])
vols = st.decimals(min_value=D("0.05"), max_value=D("3"), places=3)
marks = st.decimals(min_value=D(1000), max_value=D(200000), places=1)


def snapshot(symbol: str, mark: D, vol: D) -> MarketSnapshot:
    return MarketSnapshot(
        symbol=symbol,
        asof_ms=0,
        last_price=mark,
        mark_price=mark,
        volatility=vol,
        atr=mark * vol / D(94),
        funding=FundingInfo(D(0), D(8), None),
        bar_hours=D(1),
    )


def held_view(sign: int, mark: D, vol: D, held: D, resting: D | None) -> ContractView:
    """BTC held ``sign * held`` at ``mark``, deciding the same side, its stop at ``resting``."""
    pos = Position(BTC, sign * held, mark, D(3), MarginMode.ISOLATED)
    return ContractView(
        BTC, sign, True, D(125), BINANCE[BTC], snapshot(BTC, mark, vol), pos, resting, D(10000)
    )


# -- the policy: a crossed resting stop is no trailing anchor ---------------------------------


@given(
    sign=sides,
    mark=marks,
    vol=vols,
    held=st.decimals(min_value=D("0.001"), max_value=D(1), places=3),
    past=st.decimals(min_value=D(1), max_value=D(20), places=3),
)
@example(sign=1, mark=D("113988.8"), vol=D("0.27"), held=D("0.117"), past=D(10))  # the finding
@example(sign=-1, mark=D(50000), vol=D("0.5"), held=D("0.1"), past=D(1))  # at the mark
@settings(max_examples=200)
def test_a_resting_stop_the_mark_has_crossed_is_no_trailing_anchor(
    sign: int, mark: D, vol: D, held: D, past: D
) -> None:
    """A long's sell stop at or above the mark (a short's buy stop at or below it) leaves the
    decision exactly as no resting stop would, and its stop on the protective side of the
    mark: never one carried to the mark by a stop the venue would have fired."""
    crossed = BINANCE[BTC].stop_price(mark * past if sign > 0 else mark / past, sign)
    if (crossed - mark) * sign < 0:  # (rounded back across the mark: a tick-sized example)
        crossed = mark
    [with_it] = decide([held_view(sign, mark, vol, held, crossed)], VOL_TARGET)
    [without] = decide([held_view(sign, mark, vol, held, None)], VOL_TARGET)
    assert with_it == without
    if with_it.target_qty != 0:
        assert with_it.stop_loss is not None
        assert (with_it.stop_loss - mark) * sign < 0


@given(sign=sides, mark=marks, vol=vols, where=st.decimals(min_value=D("0.01"), max_value=1))
@settings(max_examples=100)
def test_a_resting_stop_the_mark_has_not_crossed_still_trails(
    sign: int, mark: D, vol: D, where: D
) -> None:
    """Between the policy's stop and the mark, the resting stop is kept (it only ever moves
    toward the price)."""
    [own] = decide([held_view(sign, mark, vol, D("0.1"), None)], VOL_TARGET)
    if own.target_qty == 0 or own.stop_loss is None:
        return
    inst = BINANCE[BTC]
    tighter = inst.stop_price(own.stop_loss + (mark - own.stop_loss) * where, sign)
    if (tighter - mark) * sign >= 0:
        return  # (no grid price strictly between)
    [d] = decide([held_view(sign, mark, vol, D("0.1"), tighter)], VOL_TARGET)
    assert d.stop_loss == tighter


def _hedge_leg(resting: D | None) -> HedgeLeg:
    mark = D(50000)
    pos = Position(BTC, D("-0.3"), mark, D(10), MarginMode.ISOLATED)
    return HedgeLeg(BTC, BINANCE[BTC], snapshot(BTC, mark, D("0.5")), D(1), pos, resting)


def _hedge(resting: D | None) -> Decision:
    assert HEDGED.hedge is not None
    policy = HEDGED.model_copy(
        update={"hedge": HEDGED.hedge.model_copy(update={"target_net_exposure": D("0.5")})}
    )
    inputs = HedgeInputs(
        equity=D(10000),
        book=(BookLeg("SOL/USDT:USDT", D(24000), D(1)),),
        legs=(_hedge_leg(resting),),
        now_ms=10 * HOUR,
        last_change_ms=None,
        allow_increase=True,
        max_leverage=D(5),
    )
    return decide_hedge(inputs, policy).decisions[0]


def test_a_hedge_legs_crossed_stop_is_no_trailing_anchor() -> None:
    """A short hedge leg whose buy stop reads below the mark is decided as with none; one
    above the mark, nearer than the policy's, still trails."""
    own = _hedge(None)
    assert own.target_qty < 0
    assert own.stop_loss is not None
    assert own.stop_loss > D(50000)
    assert _hedge(D(5000)) == own  # ten times below: a garbled reading
    assert _hedge(D(50000)) == own  # at the mark: the venue fires it now
    assert _hedge(D("50000.1")).stop_loss == D("50000.1")  # not crossed: trails


# -- the risk layer: no increase on a stop moved nearer the mark ------------------------------


def _lev_reading(leverage: D, target: D = D("0.204")) -> Decision:
    """The second finding, as the securing step sees it: 0.117 BTC held (isolated, bought at a
    3x setting, the venue's liquidation price 76297.8), its setting read as ``leverage``; the
    policy wants 0.204 with the stop at 109901.6."""
    mark = D("113988.8")
    pos = Position(
        BTC,
        D("0.117"),
        mark,
        leverage,
        MarginMode.ISOLATED,
        isolated_margin=D("4445.56"),
        liquidation_price=D("76297.8"),
    )
    acct = AccountView(D("9992.66"), {BTC: pos}, {BTC: []}, {BTC: mark})
    wanted = Decision(
        symbol=BTC,
        direction=1,
        target_leverage=D("2.33"),
        target_qty=target,
        stop_loss=D("109901.6"),
        take_profit=None,
        reason="BTC: wanted",
    )
    return secure_decision(
        wanted,
        acct,
        BINANCE,
        mark=mark,
        buffer=D(3222),  # 2 daily-volatility units at 0.27 a year
        margin_mode=MarginMode.ISOLATED,
        entry_slippage=LIMITS.stop_slippage,
    )


def test_a_leverage_reading_that_forces_the_stop_in_adds_nothing() -> None:
    honest = _lev_reading(D(3))
    assert honest.target_qty == D("0.204")  # read right, the increase goes
    assert honest.stop_loss == D("109901.6")
    garbled = _lev_reading(D(30))  # the increase would margin at 30x: liquidation near the mark
    assert garbled.target_qty == D("0.117")  # held, not grown
    assert garbled.stop_loss == D("109901.6")  # the held position's stop, not one forced in
    assert garbled.target_leverage == D("1.33")
    assert garbled.reason.endswith(
        "; stop 109901.6 -> 113900.9 at size 0.204 (valid range before liquidation), nearer the "
        "mark than the policy's stop distance: no increase on it -> size 0.117 (held)"
    )
    # A reduction is still taken, with its stop.
    assert _lev_reading(D(30), target=D("0.1")).target_qty == D("0.1")


def test_no_entry_on_a_stop_moved_in_and_the_reason_says_why() -> None:
    """Flat: a stop that must move in (here through the mark) opens nothing."""
    mark = D(50000)
    wanted = Decision(
        symbol=BTC,
        direction=1,
        target_leverage=D(2),
        target_qty=D("0.4"),
        stop_loss=D(50010),
        take_profit=D(55000),
        reason="BTC: wanted",
    )
    acct = AccountView(D(10000), {}, {}, {BTC: mark})
    d = secure_decision(
        wanted, acct, BINANCE, mark=mark, buffer=D(0), margin_mode=MarginMode.ISOLATED
    )
    assert d.target_qty == 0
    assert d.stop_loss is None
    assert d.take_profit is None
    assert d.reason.endswith(
        "; stop 50010 -> 49999.9 at size 0.4 (valid range before liquidation), nearer the mark "
        "than the policy's stop distance: no increase on it -> no position"
    )


def test_an_entry_whose_stop_would_move_in_is_cut_to_where_the_policys_stop_rests() -> None:
    """Not a reading that contradicts the mark: a policy sized at the edge of its liquidation
    buffer (24x, the stop 4 % away, no buffer), which the entry's slippage puts a little
    beyond it. The entry is the largest whose stop rests where the policy put it, not one on
    a stop moved 241 USDT in (nor none at all)."""
    mark = D(50000)
    wanted = Decision(
        symbol=BTC,
        direction=1,
        target_leverage=D(24),
        target_qty=D("4.8"),
        stop_loss=D(48000),
        take_profit=None,
        reason="BTC: wanted",
    )
    acct = AccountView(D(10000), {}, {}, {BTC: mark})
    d = secure_decision(
        wanted,
        acct,
        BINANCE,
        mark=mark,
        buffer=D(0),
        margin_mode=MarginMode.ISOLATED,
        entry_slippage=LIMITS.stop_slippage,
    )
    assert (d.target_qty, d.stop_loss, d.target_leverage) == (D("4.20"), D(48000), D(21))
    assert d.reason.endswith(
        "; stop 48000 -> 48241.1 at size 4.8 (valid range before liquidation), nearer the mark "
        "than the policy's stop distance: no increase on it -> size cut to 4.20, where the "
        "policy's stop rests"
    )
    # One step more and the stop would have to move in again.
    above = replace(wanted, target_qty=D("4.21"), target_leverage=D("21.05"))
    assert secure_decision(
        above,
        acct,
        BINANCE,
        mark=mark,
        buffer=D(0),
        margin_mode=MarginMode.ISOLATED,
        entry_slippage=LIMITS.stop_slippage,
    ).target_qty == D("4.20")


def test_a_stop_placed_farther_than_the_policy_wants_refuses_nothing() -> None:
    """A long's stop rounded to the mark on a coarse grid (the policy's distance under a tick)
    or wanted below zero is placed a tick off the mark or at the lowest price: farther from
    the mark than the policy's, so no loss is understated and the size stands."""
    inst = _inst(D("0.1"))
    for mark, wanted, placed in ((D("0.2"), D("0.2"), D("0.1")), (D(5), D(-3), D("0.1"))):
        fitted = fit_size(
            inst,
            qty=D(1000),
            sign=1,
            mark=mark,
            wanted=wanted,
            buffer=D(0),
            liquidation_of=lambda _size: None,
            held=D(0),
        )
        assert (fitted.qty, fitted.stop, fitted.refused) == (D(1000), placed, None)


def _inst(tick: D) -> Instrument:
    return replace(BINANCE[BTC], tick_size=tick)


@given(
    tick=st.sampled_from([D("0.1"), D("0.5"), D(5), D("0.0001")]),
    sign=sides,
    mark=marks,
    qty=st.decimals(min_value=D(0), max_value=D(50), places=3),
    held=st.decimals(min_value=D(0), max_value=D(50), places=3),
    lev=st.decimals(min_value=D("0.5"), max_value=D(60), places=2),
    buffer_frac=st.decimals(min_value=D(0), max_value=D("0.2"), places=3),
    wanted_frac=st.none() | st.decimals(min_value=D("0.5"), max_value=D("1.5"), places=4),
)
@settings(max_examples=300)
def test_fit_size_takes_no_increase_on_a_stop_moved_in(
    tick: D,
    sign: int,
    mark: D,
    qty: D,
    held: D,
    lev: D,
    buffer_frac: D,
    wanted_frac: D | None,
) -> None:
    """Above ``held``, the size fitted has its stop where it was wanted (on the grid); it is
    never larger than without ``held``, and equal to it when nothing was refused."""
    inst = _inst(tick)

    def liquidation_of(size: D) -> D | None:
        # toward the mark as the size grows (as leverage does)
        return None if size <= 0 else mark * (1 - sign / (lev * (1 + size / 100)))

    wanted = None if wanted_frac is None else mark * wanted_frac

    def fit(bar: D | None) -> FittedSize:
        return fit_size(
            inst,
            qty=qty,
            sign=sign,
            mark=mark,
            wanted=wanted,
            buffer=mark * buffer_frac,
            liquidation_of=liquidation_of,
            held=bar,
        )

    free, barred = fit(None), fit(held)
    assert barred.qty <= free.qty
    if barred.refused is None:
        assert barred == free
    else:
        assert barred.refused == (free.qty, free.stop)
        assert free.stop is not None
        assert moved_in(inst, sign=sign, mark=mark, stop=free.stop, wanted=wanted)
    if barred.qty > held:
        assert barred.stop is not None
        assert not moved_in(inst, sign=sign, mark=mark, stop=barred.stop, wanted=wanted)


@given(
    sign=sides,
    mark=marks,
    held=st.decimals(min_value=D("0.001"), max_value=D(2), places=3),
    grow=st.decimals(min_value=D(1), max_value=D(4), places=2),
    setting=st.sampled_from([D(1), D(3), D(10), D(30), D(100)]),
    wanted_frac=st.decimals(min_value=D("0.001"), max_value=D("0.2"), places=4),
    buffer_frac=st.decimals(min_value=D(0), max_value=D("0.05"), places=4),
)
@settings(max_examples=300)
def test_secured_increases_keep_the_policys_stop(
    sign: int,
    mark: D,
    held: D,
    grow: D,
    setting: D,
    wanted_frac: D,
    buffer_frac: D,
) -> None:
    """Whatever setting the held isolated position reads: a decision secured to more than is
    held has the stop the policy decided (on the grid), never one moved toward the mark."""
    inst = BINANCE[BTC]
    pos = Position(BTC, sign * held, mark, setting, MarginMode.ISOLATED, held * mark / setting)
    acct = AccountView(D(100000), {BTC: pos}, {BTC: []}, {BTC: mark})
    stop = inst.stop_price(mark * (1 - sign * wanted_frac), sign)
    target = inst.floor_qty(held * grow)
    wanted = Decision(
        symbol=BTC,
        direction=sign,
        target_leverage=target * mark / D(10000),
        target_qty=sign * target,
        stop_loss=stop,
        take_profit=None,
        reason="BTC: wanted",
    )
    d = secure_decision(
        wanted,
        acct,
        BINANCE,
        mark=mark,
        buffer=mark * buffer_frac,
        margin_mode=MarginMode.ISOLATED,
        entry_slippage=LIMITS.stop_slippage,
    )
    if abs(d.target_qty) > held:
        assert d.stop_loss is not None
        assert not moved_in(inst, sign=sign, mark=mark, stop=d.stop_loss, wanted=stop)
    assert abs(d.target_qty) <= target


# -- the engine: a tick on a garbled open-orders answer ---------------------------------------


class StopsListedTenfold(SimulatedExchange):
    """The simulated venue, whose next ``garble`` open-orders answers list every stop-loss at
    ten times its trigger (the rest of the answer as it is)."""

    garble = 0

    def fetch_open_orders(self, symbol: str) -> list[Order]:
        orders = super().fetch_open_orders(symbol)
        if not self.garble:
            return orders
        self.garble -= 1
        return [
            replace(o, trigger_price=o.trigger_price * 10)
            if o.purpose is OrderPurpose.STOP_LOSS and o.trigger_price is not None
            else o
            for o in orders
        ]


def _engine(limits: RiskLimits, contracts: list[ContractSpec]) -> tuple[Engine, StopsListedTenfold]:
    clock = SimClock(T0)
    market = FakeMarket()
    ex = StopsListedTenfold(
        BINANCE, clock, starting_balance=D(10000), margin_mode=MarginMode.ISOLATED
    )
    px, _ = market.last_price(BTC, T0) or (D(0), 0)
    for spec in contracts:
        ex.set_mark(spec.symbol, px)
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=MemoryStore(),
        policy=VOL_TARGET,
        contracts=contracts,
        limits=limits,
        account="t",
        margin_mode=MarginMode.ISOLATED,
    )
    return engine, ex


def test_a_tick_on_a_stop_listed_past_the_mark_adds_no_exposure() -> None:
    """The finding through the engine: a position the loss budget sized below its target, then
    one answer listing its stop at ten times the trigger. Nothing is bought and the leverage
    setting stays; the stop is where the policy puts it."""
    tight = replace(LIMITS, daily_loss=D("0.01"))  # the budget binds below the target
    engine, ex = _engine(tight, [ContractSpec(BTC, "long", D(125))])
    engine.tick()
    before = ex.fetch_positions([BTC])[BTC]
    [stop] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert "loss budget" in engine.tick().decisions[0].reason  # (the budget binds, clean)
    orders = len(ex.orders)

    ex.garble = 1
    result = engine.tick()
    entries = [o for o in list(ex.orders.values())[orders:] if o.purpose is OrderPurpose.ENTRY]
    assert entries == []
    [d] = result.decisions
    assert "valid range before liquidation" not in d.reason  # no stop moved by the risk layer
    after = ex.fetch_positions([BTC])[BTC]
    assert (after.qty, after.leverage) == (before.qty, before.leverage)
    [kept] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert kept.trigger_price == d.stop_loss == stop.trigger_price


def test_an_undecided_position_whose_stop_reads_crossed_counts_at_the_verifications_stop() -> None:
    """BTC held without a decision this tick, its stop read ten times over (above the mark):
    the loss budget counts BTC at the stop the verification would place (the policy's distance
    around the mark; without statistics, FALLBACK_STOP), not at a stop that loses nothing. ETH
    is cut as if that stop rested, not grown into the room a garbled answer made."""
    engine, _ = _engine(
        LIMITS, [ContractSpec(BTC, "long", D(125)), ContractSpec(ETH, "long", D(125))]
    )
    mark = D(60000)
    pos = Position(BTC, D("0.1"), mark, D(5), MarginMode.ISOLATED, D(1200))
    honest = mark * (1 - FALLBACK_STOP)

    def acct(trigger: D) -> AccountView:
        stop = Order(
            client_id="t-sl-BTC-x-1",
            exchange_id="1",
            symbol=BTC,
            side=OrderSide.SELL,
            type=OrderType.STOP_MARKET,
            purpose=OrderPurpose.STOP_LOSS,
            amount=D("0.1"),
            filled=D(0),
            status=OrderStatus.OPEN,
            reduce_only=True,
            trigger_price=trigger,
            trigger_by=TriggerBy.MARK,
        )
        return AccountView(D(10000), {BTC: pos}, {BTC: [stop]}, {BTC: mark, ETH: D(3000)})

    eth = Decision(
        symbol=ETH,
        direction=1,
        target_leverage=D(3),
        target_qty=D(10),
        stop_loss=D(2960),
        take_profit=None,
        reason="ETH: wanted",
    )
    memory = initial_memory(D(10000), T0)
    [as_placed] = engine.within_loss_budget([eth], acct(honest), memory, {})
    [garbled] = engine.within_loss_budget([eth], acct(honest * 10), memory, {})
    assert as_placed.target_qty < eth.target_qty  # (the budget binds)
    assert garbled == as_placed
