"""A policy's ``allow_increase = false`` binds the decision, as the trading state's does.

Found by the review of extreme-but-valid policy files: decide() applied "no increase allowed"
for the trading state only; the policy's flag went into ``Decision.allow_increase`` alone, which
the planner obeys with a note nobody records. From flat, every decision said target 0.033 BTC
with a stop and a take-profit, the account stayed flat the whole run, and no reason, event or
denial said why. The target is now what the bot will hold, and the reason says why.
"""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

from bot.config.loader import load_policy
from bot.domain.enums import MarginMode, OrderPurpose
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.domain.position import Position
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.instruments import load_instruments
from bot.policy.decide import decide
from bot.policy.inputs import ContractView
from bot.store.memory import MemoryStore
from tests.conftest import make_exchange
from tests.unit.test_engine import BTC, LIMITS, FakeMarket

ROOT = Path(__file__).resolve().parents[2]
VOL_TARGET = load_policy(ROOT / "policies" / "vol_target.toml")
NO_INCREASE = VOL_TARGET.model_copy(update={"allow_increase": False})
BTC_INST: Instrument = load_instruments("binanceusdm")[BTC]


def view(held: D = D(0), *, state_allows: bool = True) -> ContractView:
    """BTC long at 100,000, volatility 0.35 (vol_target's 0.70: 2x), a 3,333 USDT sleeve."""
    snap = MarketSnapshot(
        symbol=BTC,
        asof_ms=0,
        last_price=D(100000),
        mark_price=D(100000),
        volatility=D("0.35"),
        atr=D(900),
        funding=FundingInfo(D(0), D(8), None),
        bar_hours=D(1),
    )
    pos = Position(BTC, held, D(100000), D(3), MarginMode.ISOLATED) if held else None
    return ContractView(BTC, 1, state_allows, D(5), BTC_INST, snap, pos, None, D(3333))


def test_a_flat_contract_under_the_policy_is_decided_flat_and_says_why() -> None:
    [wanted] = decide([view()], VOL_TARGET)
    assert wanted.target_qty == D("0.066")  # (what the same policy decides when it may add)
    [d] = decide([view()], NO_INCREASE)
    assert d.target_qty == 0
    assert (d.stop_loss, d.take_profit) == (None, None)
    assert not d.allow_increase
    assert "no increase allowed (policy)" in d.reason


def test_a_held_position_is_kept_not_grown_and_a_smaller_target_still_reduces_it() -> None:
    [kept] = decide([view(D("0.05"))], NO_INCREASE)
    assert kept.target_qty == D("0.05")
    assert "no increase allowed (policy)" in kept.reason
    [cut] = decide([view(D("0.1"))], NO_INCREASE)  # 3x held, 2x wanted: de-levering goes
    assert cut.target_qty < D("0.1")
    assert "no increase allowed" not in cut.reason


def test_the_trading_state_alone_keeps_its_own_words() -> None:
    [d] = decide([view(state_allows=False)], VOL_TARGET)
    assert d.target_qty == 0
    assert d.reason.count("no increase allowed") == 1
    assert "(policy)" not in d.reason


def test_the_tick_records_the_position_it_holds() -> None:
    """Through the engine on the simulated exchange: nothing is sent, and the decision
    recorded (decisions.csv in a simulation) is the flat book the account keeps."""
    instruments = {BTC: BTC_INST}
    ex, clock = make_exchange(instruments)
    market = FakeMarket()
    px, _ = market.last_price(BTC, clock.now_ms()) or (D(0), 0)
    ex.set_mark(BTC, px)
    store = MemoryStore()
    engine = Engine(
        clock=clock,
        exchange=ex,
        market=market,
        store=store,
        policy=NO_INCREASE,
        contracts=[ContractSpec(BTC, "long", D(125))],
        limits=LIMITS,
        account="t",
    )
    result = engine.tick()
    [d] = result.decisions
    assert d.target_qty == 0
    assert "no increase allowed (policy)" in d.reason
    assert ex.fetch_positions([BTC]) == {}
    assert not [r for r in store.orders.values() if r.request.purpose is OrderPurpose.ENTRY]
    [recorded] = [r.decision for r in store.decisions]
    assert recorded.target_qty == 0
