"""leverage.min below 1: a position smaller than its equity share, through the whole path
(policy file, decision, hysteresis, exchange setting, order plan)."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from bot.config.loader import load_policy
from bot.config.policy import Policy
from bot.domain.decision import Decision
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.domain.position import Position
from bot.engine.planner import exchange_setting, plan_size
from bot.errors import ConfigError
from bot.instruments import load_instruments
from bot.policy.decide import decide
from bot.policy.inputs import ContractView
from bot.policy.leverage import leverage_setting, liquidation_cap
from bot.ports.client_ids import make_client_id

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
BTC: Instrument = load_instruments("binanceusdm")["BTC/USDT:USDT"]
SLEEVE = D(10000)
PRICE = D(60000)


def view(vol: str, position: Position | None = None) -> ContractView:
    snap = MarketSnapshot(
        symbol=BTC.symbol,
        asof_ms=0,
        last_price=PRICE,
        mark_price=PRICE,
        volatility=D(vol),
        atr=PRICE * D(vol) / D(94),
        funding=FundingInfo(D(0), D(8), None),
        bar_hours=D(1),
    )
    return ContractView(BTC.symbol, 1, True, D(125), BTC, snap, position, None, SLEEVE)


def with_leverage(policy: Policy, **values: str) -> Policy:
    lev = policy.leverage.model_copy(update={k: D(v) for k, v in values.items()})
    return policy.model_copy(update={"leverage": lev})


@pytest.mark.parametrize("name", ["vol_target", "risk_parity", "conservative"])
def test_shipped_volatility_policies_may_go_below_one(name: str) -> None:
    lev = load_policy(POLICIES / f"{name}.toml").leverage
    assert lev.min < 1 < lev.max
    assert lev.hysteresis > 0


def test_policy_file_with_fractional_minimum_loads_and_negative_is_refused(
    tmp_path: Path,
) -> None:
    text = (POLICIES / "vol_target.toml").read_text()
    start = text.index("\nmin = ") + 1
    line = text[start : text.index("\n", start)]
    ok = tmp_path / "quarter.toml"
    ok.write_text(text.replace(line, "min = 0.25"))
    assert load_policy(ok).leverage.min == D("0.25")
    bad = tmp_path / "negative.toml"
    bad.write_text(text.replace(line, "min = -0.5"))
    with pytest.raises(ConfigError, match=r"leverage\.min"):
        load_policy(bad)


def test_high_volatility_gives_a_position_smaller_than_its_equity_share() -> None:
    policy = with_leverage(
        load_policy(POLICIES / "vol_target.toml"),
        min="0.25",
        max="5",
        target_volatility="0.5",
        hysteresis="0",
    )
    # 0.5 / 1.6 = 0.3125x: above the floor, below 1.
    [d] = decide([view("1.6")], policy)
    assert d.target_leverage == D("0.31")
    assert 0 < d.target_qty * PRICE < SLEEVE  # smaller than the sleeve's equity
    assert d.target_qty == BTC.floor_qty(D("0.31") * SLEEVE / PRICE)
    assert "leverage 0.31" in d.reason
    # Wilder still (400 % a year: stop and liquidation buffer span 94 % of the price): clamped
    # at the floor of 0.25x, never to zero, because a long at setting 1 cannot be liquidated.
    [floor] = decide([view("4")], policy)
    assert floor.target_leverage == D("0.25")
    assert floor.target_qty == BTC.floor_qty(D("0.25") * SLEEVE / PRICE)
    # Calm: leverage rises above 1.
    [calm] = decide([view("0.25")], policy)
    assert calm.target_leverage == D(2)


def test_hysteresis_holds_a_fractional_leverage() -> None:
    policy = with_leverage(
        load_policy(POLICIES / "vol_target.toml"),
        min="0.25",
        target_volatility="0.5",
        hysteresis="0.25",
        max_step="1",
    )
    held = BTC.floor_qty(D("0.4") * SLEEVE / PRICE)  # 0.4x of the sleeve
    pos = Position(BTC.symbol, held, PRICE, D(1), MarginMode.ISOLATED)
    # Volatility 1.4 -> 0.357x: within 25 % of the current 0.4x, so kept.
    [d] = decide([view("1.4", pos)], policy)
    assert "within hysteresis 0.25 -> keep 0.39" in d.reason  # 0.396x, rounded down
    # The planner's rebalance tolerance absorbs the rounding: no trade.
    assert held - d.target_qty < policy.orders.rebalance_tolerance * held
    # Volatility 2 -> 0.25x: outside the band, de-levered.
    [cut] = decide([view("2", pos)], policy)
    assert cut.target_leverage == D("0.25")
    assert cut.target_qty < held


def test_liquidation_cap_keeps_a_half_position_where_setting_two_would_liquidate() -> None:
    # Stop 30 % and buffer 25 % below the price: the limit is at 45 % of the price. Setting 2
    # liquidates near 50 %, setting 1 never (long): targets up to 0.5x remain allowed.
    cap = liquidation_cap(BTC, 1, PRICE, D(5000), PRICE * D("0.30"), PRICE * D("0.25"))
    assert cap == D("0.5")
    # A milder limit (stop + buffer 20 %) allows setting 4 -> targets up to 3x, as before.
    assert liquidation_cap(BTC, 1, PRICE, D(5000), PRICE * D("0.1"), PRICE * D("0.1")) >= 3
    # A stop and buffer reaching the price still allow nothing.
    assert liquidation_cap(BTC, 1, PRICE, D(5000), PRICE * D("0.6"), PRICE * D("0.4")) == 0


def test_fractional_target_gets_a_setting_with_headroom_and_a_plain_entry_order() -> None:
    assert leverage_setting(D("0.25")) == 1  # locks a quarter of the sleeve
    assert leverage_setting(D("0.5")) == 1
    assert leverage_setting(D("0.51")) == 2
    assert leverage_setting(D(1)) == 2
    assert exchange_setting(D("0.25"), BTC, D(2500)) == 1
    qty = BTC.floor_qty(D("0.25") * SLEEVE / PRICE)
    d = Decision(
        symbol=BTC.symbol,
        direction=1,
        target_leverage=D("0.25"),
        target_qty=qty,
        stop_loss=D(55000),
        take_profit=None,
        reason="quarter",
    )
    counter = iter(range(100))

    def new_id(purpose: OrderPurpose) -> str:
        return make_client_id("main", purpose, BTC.symbol, 1_750_000_000_000, next(counter))

    plan = plan_size(d, D(0), D(3), BTC, PRICE, D("0.1"), new_id)
    assert plan.leverage == 1
    [entry] = plan.increase
    assert (entry.side, entry.amount, entry.reduce_only) == (OrderSide.BUY, qty, False)
    # De-levering from 1x to 0.25x is one reduce-only order.
    held = BTC.floor_qty(SLEEVE / PRICE)
    cut = plan_size(d, held, D(2), BTC, PRICE, D("0.1"), new_id)
    [r] = cut.reduce
    assert r.reduce_only
    assert r.amount is not None
    assert r.side is OrderSide.SELL
    assert held - r.amount <= qty
