"""An increase stays within the notional the isolated leverage setting held is allowed at.

Found by the review of extreme-but-valid policy files (static 100x, BTC on Binance, isolated): the
position was opened below BTC's 300,000 bracket edge at setting 101 (one above the target's 100,
the 150x bracket). A later target across the edge (2.979 BTC at 105,800) kept the setting held
for the increase (``setting_floor``: Binance does not lower an open isolated position's
leverage, -4161), but ``exchange_setting`` then clamped it to the 100x maximum beyond the edge:
the bot asked the venue to lower it to 100, was refused, and dropped the increase with a
``rejected`` event, tick after tick. The decision now stops the increase inside the notional the
setting held is allowed at and says why; no setting change is asked for. Bybit lowers the
setting of an open isolated position, re-sizing its margin, and is unchanged; so is cross margin.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.config.loader import load_policy
from bot.config.policy import Policy
from bot.domain.enums import EventKind, MarginMode, OrderPurpose, OrderSide, OrderType, TradingState
from bot.domain.instrument import Bracket, Instrument
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.domain.orders import OrderRequest
from bot.domain.position import Position
from bot.engine.contracts import ContractSpec
from bot.engine.planner import plan_size
from bot.engine.tick import Engine
from bot.errors import OrderRejected
from bot.instruments import load_instruments
from bot.policy.decide import decide
from bot.policy.hedge import BookLeg, HedgeInputs, HedgeLeg, decide_hedge
from bot.policy.inputs import ContractView
from bot.policy.leverage import q2, setting_floor, within_held_setting
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0, make_exchange
from tests.unit.test_engine import HOUR
from tests.unit.test_hedge_policy import policy as hedged
from tests.unit.test_margin_cap import WIDE, MovingMarket
from tests.unit.test_planner import Ids, decision

ROOT = Path(__file__).resolve().parents[2]
BTC = "BTC/USDT:USDT"
BINANCE = load_instruments("binanceusdm")[BTC]
BYBIT = load_instruments("bybit")[BTC]
# A small table, the same on both venues: 20x below 20,000 USDT, 10x from there on.
SMALL = (
    Bracket(D(0), D(20000), D(20), D("0.004"), D(0)),
    Bracket(D(20000), D(10**9), D(10), D("0.01"), D(120)),
)


def static(tmp_path: Path, leverage: str, stop: str = "5", buffer: str = "2") -> Policy:
    """static_3x at another leverage, stop distance (percent) and liquidation buffer."""
    text = (ROOT / "policies" / "static_3x.toml").read_text()
    for old, new in [
        ("min = 3", f"min = {leverage}"),
        ("max = 3", f"max = {leverage}"),
        ("fixed = 3", f"fixed = {leverage}"),
        ("distance = 5", f"distance = {stop}"),
        ("buffer_vol_units = 2", f"buffer_vol_units = {buffer}"),
    ]:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"static_{leverage}x.toml"
    path.write_text(text)
    return load_policy(path)


def snap(price: D) -> MarketSnapshot:
    return MarketSnapshot(
        symbol=BTC,
        asof_ms=0,
        last_price=price,
        mark_price=price,
        volatility=D("0.3"),
        atr=price * D("0.003"),
        funding=FundingInfo(D(0), D(8), None),
        bar_hours=D(1),
    )


def long(qty: str, setting: int, mode: MarginMode = MarginMode.ISOLATED) -> Position:
    return Position(BTC, D(qty), D(105500), D(setting), mode)


def entry(qty: str) -> OrderRequest:
    return OrderRequest(
        "held", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D(qty), False
    )


def held_at(inst: Instrument, setting: int, qty: str, mark: D) -> SimulatedExchange:
    ex, _ = make_exchange({BTC: inst}, balance="3200")
    ex.set_mark(BTC, mark)
    ex.set_leverage(BTC, setting)
    ex.place_order(entry(qty))
    return ex


def test_the_notional_a_setting_is_allowed_below() -> None:
    """BTC on Binance: 150x below 300,000, 100x below 800,000, 75x below 3,000,000, ..."""
    assert BINANCE.notional_limit_for(D(101)) == 300000
    assert BINANCE.notional_limit_for(D(150)) == 300000
    assert BINANCE.notional_limit_for(D(100)) == 800000
    assert BINANCE.notional_limit_for(D(151)) == 0  # above every bracket: no notional
    assert BINANCE.notional_limit_for(D(1)) is None  # every bracket allows it


def test_the_reviewers_tick_is_decided_inside_the_bracket_edge(tmp_path: Path) -> None:
    """2.645 BTC held at setting 101, mark 105,800, a 3,200 USDT sleeve: 100x wants 2.994
    (316,757 USDT, the 100x bracket). The decision stops at 2.832 (299,625 USDT), the planner
    keeps the setting, and the simulated Binance fills the increase."""
    policy = static(tmp_path, "100", stop="0.3", buffer="0")  # the reviewer's
    mark = D(105800)
    v = ContractView(BTC, 1, True, D(100), BINANCE, snap(mark), long("2.645", 101), None, D(3200))
    [d] = decide([v], policy)
    assert d.target_qty == BINANCE.floor_qty(D(300000) * D("0.999") / mark) == D("2.832")
    assert d.target_leverage == q2(d.target_qty * mark / D(3200))
    assert "isolated setting 101 held: above the bracket maximum from notional 300000" in d.reason
    floor = setting_floor(BINANCE, v.position, 1)
    assert floor == 101
    plan = plan_size(d, D("2.645"), D(101), BINANCE, mark, D(0), Ids(), floor)
    assert plan.leverage is None  # no setting change asked for
    [order] = plan.increase
    assert order.amount == D("0.187")

    ex = held_at(BINANCE, 101, "2.645", mark)
    ex.place_order(order)
    pos = ex.fetch_positions([BTC])[BTC]
    assert (pos.qty, pos.leverage) == (D("2.832"), D(101))


def test_the_planner_never_asks_to_lower_the_setting_held_for_an_increase() -> None:
    """The increase as it was decided before (2.994 at 99x): the setting would be clamped to
    100, which the venue refuses, and the increase with it. The planner now sends neither."""
    mark = D(105800)
    uncapped = decision("2.994", lev="99", sl="105482", tp=None)
    with pytest.raises(OrderRejected) as refused:
        held_at(BINANCE, 101, "2.645", mark).set_leverage(BTC, 100)
    assert refused.value.code == -4161
    plan = plan_size(uncapped, D("2.645"), D(101), BINANCE, mark, D(0), Ids(), 101)
    assert (plan.leverage, plan.increase) == (None, [])
    assert "isolated setting 101 held lowered to 100" in plan.notes[0]
    # Flat, or on the other side, there is no setting held: the bracket's maximum is used.
    plan = plan_size(uncapped, D(0), D(101), BINANCE, mark, D(0), Ids(), 101)
    assert plan.leverage == 100
    assert plan.increase


@pytest.mark.parametrize(
    ("venue", "mode", "capped"),
    [
        ("binanceusdm", MarginMode.ISOLATED, True),
        ("bybit", MarginMode.ISOLATED, False),  # re-sizes the margin instead
        ("binanceusdm", MarginMode.CROSS, False),
    ],
)
def test_only_a_binance_isolated_setting_holds_the_increase_back(
    venue: str, mode: MarginMode, capped: bool
) -> None:
    """0.2 BTC at 60,000 held at setting 15 (the 20x bracket); 0.4 wanted, 24,000 USDT, where
    the most is 10x. Binance isolated: the increase stops below 20,000. Bybit and cross: the
    setting is lowered to 10 and the whole increase goes through."""
    inst = replace(BINANCE if venue == "binanceusdm" else BYBIT, brackets=SMALL)
    mark = D(60000)
    held = Position(BTC, D("0.2"), mark, D(15), mode)
    qty, why = within_held_setting(inst, held, snap(mark), D("0.4"), 1)
    if capped:
        assert qty == D("0.333")  # 19,980 / 60,000
        assert why is not None
        assert "isolated setting 15 held" in why
        return
    assert (qty, why) == (D("0.4"), None)
    ex, _ = make_exchange({BTC: inst}, balance="10000", mode=mode)
    ex.set_mark(BTC, mark)
    ex.set_leverage(BTC, 15)
    ex.place_order(entry("0.2"))
    d = decision("0.4", lev="9")
    plan = plan_size(d, D("0.2"), D(15), inst, mark, D(0), Ids(), setting_floor(inst, held, 1))
    assert plan.leverage == 10
    ex.set_leverage(BTC, plan.leverage)
    for order in plan.increase:
        ex.place_order(order)
    assert ex.fetch_positions([BTC])[BTC].qty == D("0.4")


def test_a_position_carried_beyond_the_edge_is_kept_and_reductions_pass() -> None:
    inst = replace(BINANCE, brackets=SMALL)
    mark = D(60000)
    beyond = Position(BTC, D("0.35"), D(50000), D(15), MarginMode.ISOLATED)  # 21,000 now
    qty, why = within_held_setting(inst, beyond, snap(mark), D("0.4"), 1)
    assert qty == D("0.35")  # no increase, and no cut for it
    assert why is not None
    assert why.endswith("-> qty 0.35")
    assert within_held_setting(inst, beyond, snap(mark), D("0.3"), 1) == (D("0.3"), None)
    # A short wanted: the long closes first, nothing is held on that side.
    assert within_held_setting(inst, beyond, snap(mark), D("0.4"), -1) == (D("0.4"), None)


def test_a_hedge_leg_grows_within_its_setting_too() -> None:
    """A BTC hedge of 0.2 short held at setting 10 (the 20x bracket), the book grown to 24,000:
    the hedge that offsets it (0.48 BTC) would need the 10x bracket's most, 10 still allowed,
    so nothing is cut; at setting 15 the leg stops below 20,000."""
    inst = replace(BINANCE, brackets=SMALL)
    mark = D(50000)

    def leg(setting: int) -> HedgeLeg:
        pos = Position(BTC, D("-0.2"), mark, D(setting), MarginMode.ISOLATED)
        return HedgeLeg(BTC, inst, snap(mark), D(1), pos, None)

    def hedge(setting: int) -> D:
        inputs = HedgeInputs(
            equity=D(10000),
            book=(BookLeg("SOL/USDT:USDT", D(24000), D(1)),),
            legs=(leg(setting),),
            now_ms=10 * HOUR,
            last_change_ms=None,
            allow_increase=True,
            max_leverage=D(5),
        )
        [d] = decide_hedge(inputs, hedged(target_net_exposure=D(0))).decisions
        return d.target_qty

    assert hedge(10) == D("-0.48")
    assert hedge(15) == D("-0.399")  # 19,980 / 50,000


def test_the_tick_at_the_edge_sends_no_setting_change_and_records_no_refusal(
    tmp_path: Path,
) -> None:
    """Through the engine on the simulated Binance: static 3.5x opened at 35,000 USDT, setting
    5 (the 10x bracket below 40,000), then BTC 10 % higher: the equity raises the target into
    the 4x bracket (3x after the liquidation buffer, setting 4). Before, the tick asked to lower
    the setting to 4 and recorded the refusal; now the position grows to the edge at 5."""
    table = (
        Bracket(D(0), D(40000), D(10), D("0.004"), D(0)),
        Bracket(D(40000), D(10**9), D(4), D("0.01"), D(240)),
    )
    inst = replace(BINANCE, brackets=table)
    market = MovingMarket()
    ex, clock = make_exchange({BTC: inst}, slippage_bps="2")
    ex.set_mark(BTC, (market.last_price(BTC, T0) or (D(0), 0))[0])
    store = MemoryStore()
    policy = static(tmp_path, "3.5")
    policy = policy.model_copy(
        update={"orders": policy.orders.model_copy(update={"rebalance_tolerance": D(0)})}
    )
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=policy,
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=WIDE,
        account="t",
    )
    engine.tick()
    first = ex.fetch_positions([BTC])[BTC]
    assert first.leverage == 5
    market.scale = D("1.1")
    clock.advance_to(T0 + HOUR)
    price = (market.last_price(BTC, T0 + HOUR) or (D(0), 0))[0]
    ex.set_mark(BTC, price)
    result = engine.tick()
    [d] = result.decisions
    assert [e.reason for e in store.events if e.kind is EventKind.REJECTED] == []
    assert "isolated setting 5 held" in d.reason
    assert result.state is TradingState.ACTIVE
    after = ex.fetch_positions([BTC])[BTC]
    assert after.leverage == 5
    assert first.qty < after.qty == d.target_qty
    assert after.qty * price < D(40000)
