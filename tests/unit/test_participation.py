"""The volume participation cap (``[orders] max_participation``): the snapshot's mean volume, the
cap on increases in the decision, reductions never capped, unknown volume, the planner working a
capped entry over the ticks below the rebalance tolerance, and the policy key's validation."""

from __future__ import annotations

import math
from decimal import Decimal as D
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.config.loader import load_policy
from bot.config.policy import Policy
from bot.domain.decision import Decision
from bot.domain.enums import MarginMode, OrderPurpose
from bot.domain.instrument import Instrument
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.market import build_snapshot, statistics_spec
from bot.engine.planner import plan_size
from bot.engine.protection import secure_decision
from bot.errors import ConfigError
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.exchange.ccxt_market import CcxtMarketData
from bot.exchange.mapping import Candle
from bot.instruments import load_instruments
from bot.policy.decide import decide
from bot.policy.inputs import ContractView
from bot.ports.market import CandleWindow
from bot.risk.gross import cap_to_gross
from bot.risk.loss_budget import cap_to_loss_budget
from bot.stats.window_series import trailing_mean

ROOT = Path(__file__).resolve().parents[2]
STATIC = load_policy(ROOT / "policies" / "static_3x.toml")
VOL_TARGET = load_policy(ROOT / "policies" / "vol_target.toml")
BTC: Instrument = load_instruments("binanceusdm")["BTC/USDT:USDT"]
HOUR = 3_600_000
FUNDING = FundingInfo(D(0), D(8), None)


def with_orders(policy: Policy, **orders: Any) -> Policy:
    data = policy.model_dump()
    data["orders"] = {**data["orders"], **orders}
    return Policy.model_validate(data)


def snapshot(price: D, avg_volume: D | None) -> MarketSnapshot:
    return MarketSnapshot(
        symbol=BTC.symbol,
        asof_ms=0,
        last_price=price,
        mark_price=price,
        volatility=D("0.5"),
        atr=price / D(100),
        funding=FUNDING,
        bar_hours=D(1),
        avg_volume=avg_volume,
    )


def view(
    price: D, sleeve: D, held: D, avg_volume: D | None, direction: int = 1, allow: bool = True
) -> ContractView:
    pos = Position(BTC.symbol, held, price, D(3), MarginMode.ISOLATED) if held != 0 else None
    return ContractView(
        BTC.symbol, direction, allow, D(125), BTC, snapshot(price, avg_volume), pos, None, sleeve
    )


def one(v: ContractView, policy: Policy) -> Decision:
    [d] = decide([v], policy)
    return d


def ids(purpose: OrderPurpose) -> str:
    return f"id-{purpose.value}"


def traded(d: Decision, held: D, tolerance: D, price: D) -> D:
    """The position after the planner's orders for ``d`` fill exactly."""
    plan = plan_size(d, held, D(3), BTC, price, tolerance, ids)
    for req in (*plan.reduce, *plan.increase):
        assert req.amount is not None
        held += req.amount if req.side.value == "buy" else -req.amount
    return held


# --- the decision -------------------------------------------------------------------------------


def test_an_entry_is_cut_to_the_participation_and_the_reason_says_so() -> None:
    policy = with_orders(STATIC, max_participation=D("0.01"))
    # 3x of 1,000,000 at 50,000: 60 BTC wanted; 1 % of 1,000 BTC a candle: 10 BTC a tick.
    d = one(view(D(50000), D(1_000_000), D(0), D(1000)), policy)
    assert d.target_qty == D(10)
    assert d.target_leverage == D("0.50")
    assert d.participation_capped
    assert "max participation 0.01 x avg volume 1000/candle = 10.00 per tick -> qty 10" in (
        d.reason
    )
    # An add on the side held: what is held plus one tick's room.
    add = one(view(D(50000), D(1_000_000), D(25), D(1000)), policy)
    assert add.target_qty == D(35)
    assert add.participation_capped
    # The cap off: the whole target at once, and the volume changes nothing.
    assert one(view(D(50000), D(1_000_000), D(0), D(1000)), STATIC).target_qty == D(60)


def test_a_target_within_the_room_is_not_touched() -> None:
    policy = with_orders(STATIC, max_participation=D("0.5"))
    v = view(D(50000), D(1_000_000), D(0), D(1000))
    d = one(v, policy)
    assert d == one(v, STATIC)
    assert not d.participation_capped


def test_reductions_are_never_capped() -> None:
    policy = with_orders(STATIC, max_participation=D("0.001"))  # 1 BTC a tick
    # Held 200 BTC, the policy wants 60: the whole cut at once.
    v = view(D(50000), D(1_000_000), D(200), D(1000))
    assert one(v, policy).target_qty == D(60) == one(v, STATIC).target_qty
    # Direction flat: close all of it.
    flat = view(D(50000), D(1_000_000), D(200), D(1000), direction=0)
    assert one(flat, policy).target_qty == 0


def test_a_flip_closes_at_once_and_opens_with_what_the_close_leaves() -> None:
    policy = with_orders(STATIC, max_participation=D("0.01"))  # 10 BTC a tick
    # Long 4, the policy goes short 60: close 4 (never capped), open 6 this tick.
    d = one(view(D(50000), D(1_000_000), D(4), D(1000), direction=-1), policy)
    assert d.target_qty == D(-6)
    assert d.participation_capped
    # Long 30 above the room: this tick only closes; the next ticks open the short.
    d = one(view(D(50000), D(1_000_000), D(30), D(1000), direction=-1), policy)
    assert d.target_qty == 0
    assert d.stop_loss is None
    assert traded(d, D(30), D("0.1"), D(50000)) == 0


def test_unknown_volume_takes_no_increase_and_never_blocks_a_reduction() -> None:
    policy = with_orders(STATIC, max_participation=D("0.01"))
    entry = one(view(D(50000), D(1_000_000), D(0), None), policy)
    assert entry.target_qty == 0
    assert "volume unknown -> no increase" in entry.reason
    add = one(view(D(50000), D(1_000_000), D(25), None), policy)
    assert add.target_qty == D(25)
    assert not add.participation_capped
    cut = one(view(D(50000), D(1_000_000), D(200), None), policy)
    assert cut.target_qty == D(60)


def test_the_cap_comes_after_the_hard_caps() -> None:
    """The hard caps (venue's largest position, notional cap) cut first; the participation cap
    only ever lowers what is left."""
    policy = with_orders(STATIC, max_participation=D("0.01"))
    v = view(D(50000), D(1_000_000), D(0), D(1_000_000))  # room 10,000 BTC: not binding
    capped_view = ContractView(
        v.symbol, 1, True, D(125), BTC, v.market, None, None, v.sleeve_equity, D(100_000)
    )
    d = one(capped_view, policy)
    assert d.target_qty == BTC.floor_qty(D(100_000) * D("0.999") / D(50000))
    assert not d.participation_capped


prices = st.decimals(min_value=D(1000), max_value=D(100000), places=1)
sleeves = st.decimals(min_value=D(20_000), max_value=D(50_000_000), places=0)
ratios = st.decimals(min_value=D("0.02"), max_value=D(2), places=3)
fractions = st.decimals(min_value=D("0.001"), max_value=D(1), places=3)
tolerances = st.sampled_from([D(0), D("0.05"), D("0.1"), D("0.3")])


@given(
    price=prices,
    sleeve=sleeves,
    ratio=ratios,
    fraction=fractions,
    held_share=st.decimals(min_value=D(-2), max_value=D(2), places=2),
    direction=st.sampled_from([1, -1]),
)
@settings(max_examples=200, deadline=None)
def test_no_tick_increases_a_position_beyond_the_cap(
    price: D, sleeve: D, ratio: D, fraction: D, held_share: D, direction: int
) -> None:
    uncapped = one(view(price, sleeve, D(0), None, direction), STATIC).target_qty
    assume(uncapped != 0)
    avg = (abs(uncapped) * ratio / fraction).quantize(D("0.001"))
    assume(avg > 0)
    room = BTC.floor_qty(fraction * avg)
    held = BTC.floor_qty(abs(uncapped) * abs(held_share)) * (1 if held_share >= 0 else -1)
    policy = with_orders(STATIC, max_participation=fraction)
    want = one(view(price, sleeve, held, avg, direction), STATIC)
    got = one(view(price, sleeve, held, avg, direction), policy)
    assert abs(got.target_qty) <= abs(want.target_qty)
    same_side = held * direction > 0
    if same_side and abs(want.target_qty) <= abs(held):
        assert got == want  # a reduction: never capped
    elif same_side:
        assert abs(got.target_qty) - abs(held) <= room
    else:
        # From flat, or a flip: the close and the opening together stay within the room,
        # unless the close alone needs more (it is never capped: then nothing opens).
        assert abs(got.target_qty) <= max(room - abs(held), D(0))
    if got.target_qty != want.target_qty:
        assert "max participation" in got.reason


@given(price=prices, sleeve=sleeves, ratio=ratios, fraction=fractions, tolerance=tolerances)
@settings(max_examples=150, deadline=None)
def test_a_capped_entry_converges_to_the_target_under_any_tolerance(
    price: D, sleeve: D, ratio: D, fraction: D, tolerance: D
) -> None:
    """With a constant target the position grows by at most the room a tick and reaches the
    uncapped target (within the rebalance tolerance, as the uncapped bot would) in as many
    ticks as the rooms it takes: a step below the tolerance is still traded."""
    uncapped = one(view(price, sleeve, D(0), None), STATIC).target_qty
    avg = (uncapped * ratio / fraction).quantize(D("0.001"))
    room = BTC.floor_qty(fraction * avg)
    assume(room >= BTC.min_qty and room * price >= BTC.min_notional)
    policy = with_orders(STATIC, max_participation=fraction, rebalance_tolerance=tolerance)
    held = D(0)
    for _ in range(math.ceil(uncapped / room) + 1):
        d = one(view(price, sleeve, held, avg), policy)
        after = traded(d, held, tolerance, price)
        assert D(0) <= after - held <= room
        held = after
    slack = max(tolerance * uncapped, BTC.min_qty, BTC.min_notional / price)
    assert abs(uncapped - held) <= slack


def test_the_planner_trades_a_capped_step_below_the_tolerance() -> None:
    policy = with_orders(STATIC, max_participation=D("0.01"), rebalance_tolerance=D("0.3"))
    d = one(view(D(50000), D(1_000_000), D(40), D(1000)), policy)
    assert d.target_qty == D(50)
    assert d.participation_capped
    assert traded(d, D(40), D("0.3"), D(50000)) == D(50)
    # The same target from a decision the cap did not cut stays under the tolerance.
    plain = Decision(
        symbol=d.symbol,
        direction=1,
        target_leverage=d.target_leverage,
        target_qty=d.target_qty,
        stop_loss=d.stop_loss,
        take_profit=None,
        reason="",
    )
    assert traded(plain, D(40), D("0.3"), D(50000)) == D(40)


def test_later_cuts_keep_the_working_mark() -> None:
    policy = with_orders(STATIC, max_participation=D("0.01"))
    d = one(view(D(50000), D(1_000_000), D(0), D(1000)), policy)
    assert d.resized(D(5), D("0.5"), "gross cap -> ").participation_capped
    acct = AccountView(wallet=D(1_000_000), positions={}, resting={}, marks={BTC.symbol: D(50000)})
    # A stop wanted off the tick grid is rounded onto it: the decision is rebuilt, still capped.
    # (Not one beyond the valid range: moved in, it opens nothing, see test_fail_safe.py.)
    far = Decision(
        symbol=d.symbol,
        direction=1,
        target_leverage=D(2),
        target_qty=D(80),
        stop_loss=D("45000.05"),
        take_profit=None,
        reason="",
        participation_capped=True,
    )
    secured = secure_decision(
        far, acct, {BTC.symbol: BTC}, mark=D(50000), buffer=D(0), margin_mode=MarginMode.ISOLATED
    )
    assert secured is not far
    assert secured.target_qty != 0
    assert secured.participation_capped


# --- the snapshot -----------------------------------------------------------------------------


def _window(volume: np.ndarray | None, n: int = 200) -> CandleWindow:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * 1.002
    low = np.minimum(open_, close) * 0.998
    ts = np.arange(n, dtype=np.int64) * HOUR
    return CandleWindow(ts, open_, high, low, close, HOUR, volume=volume)


def test_the_snapshot_has_the_mean_volume_over_the_volatility_window() -> None:
    n = 200
    volume = np.arange(1, n + 1, dtype=np.float64)
    window = VOL_TARGET.volatility.window  # 168
    snap = build_snapshot("X", _window(volume), FUNDING, D(1), D(1), VOL_TARGET)
    assert snap is not None
    assert snap.avg_volume == D(f"{volume[-window:].mean():.8f}")


@pytest.mark.parametrize("volume", [None, np.zeros(200), np.full(200, np.nan)])
def test_unknown_or_zero_volume_is_unknown_not_a_number(volume: np.ndarray | None) -> None:
    snap = build_snapshot("X", _window(volume), FUNDING, D(1), D(1), VOL_TARGET)
    assert snap is not None
    assert snap.avg_volume is None


def test_the_precomputed_mean_is_the_windows_mean() -> None:
    rng = np.random.default_rng(5)
    x = rng.lognormal(8, 1, 500)
    out = trailing_mean(x, 24)
    assert np.isnan(out[:24]).all()
    for e in (24, 100, 500):
        assert out[e] == pytest.approx(x[e - 24 : e].mean(), rel=1e-13)
    assert statistics_spec(VOL_TARGET).window == VOL_TARGET.volatility.window


class _Venue:
    """Just the candles of a venue (what CcxtMarketData reads)."""

    def __init__(self, volumes: list[float]) -> None:
        self.rows = [Candle(i * HOUR, 100.0, 101.0, 99.0, 100.5, v) for i, v in enumerate(volumes)]

    def fetch_candles(self, symbol: str, timeframe: str, limit: int) -> list[Candle]:
        return self.rows[-limit:]


def test_the_venues_candles_carry_their_volume() -> None:
    venue = _Venue([float(i) for i in range(1, 11)])
    market = CcxtMarketData(cast(CcxtExchange, venue))
    window = market.closed_candles("X", HOUR, 10, 11 * HOUR)
    assert window.volume is not None
    assert window.volume.tolist() == [float(i) for i in range(1, 11)]
    # A venue that reports none (ccxt None -> 0): the snapshot reads it as unknown.
    silent = CcxtMarketData(cast(CcxtExchange, _Venue([0.0] * 200)))
    w = silent.closed_candles("X", HOUR, 200, 201 * HOUR)
    assert w.volume is not None
    assert not w.volume.any()


# --- the policy key -----------------------------------------------------------------------------


def test_the_key_defaults_to_off_in_every_bundled_policy() -> None:
    for path in sorted((ROOT / "policies").glob("*.toml")):
        assert load_policy(path).orders.max_participation is None, path


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("0", "must be > 0 (got 0)"),
        ("-0.1", "must be > 0 (got -0.1)"),
        ("1.5", "must be <= 1 (got 1.5)"),
        ('"a lot"', "must be a number"),
    ],
)
def test_a_bad_participation_names_the_key_and_the_file(
    tmp_path: Path, value: str, problem: str
) -> None:
    text = (ROOT / "policies" / "static_3x.toml").read_text()
    path = tmp_path / "thin.toml"
    path.write_text(f"{text}\n[orders]\nmax_participation = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    assert "thin.toml" in message
    assert "orders.max_participation" in message
    assert problem in message


def test_a_valid_participation_loads_exactly(tmp_path: Path) -> None:
    text = (ROOT / "policies" / "static_3x.toml").read_text()
    path = tmp_path / "thin.toml"
    path.write_text(f"{text}\n[orders]\nmax_participation = 0.05\n")
    assert load_policy(path).orders.max_participation == D("0.05")


def test_a_position_off_the_step_grid_is_never_cut_by_the_cap() -> None:
    """A position opened by hand off the venue's step (1.0005 BTC): the cap adds its room to
    it and never rounds it down into a reduction; a room under one step adds nothing."""
    policy = with_orders(STATIC, max_participation=D("0.01"))
    d = one(view(D(50000), D(1_000_000), D("1.0005"), D(1000)), policy)
    assert d.target_qty == D("11.0005")
    thin = one(view(D(50000), D(1_000_000), D("1.0005"), D("0.05")), policy)
    assert thin.target_qty == D("1.0005")
    assert not thin.participation_capped


ETH: Instrument = load_instruments("binanceusdm")["ETH/USDT:USDT"]


def eth_view(price: D, sleeve: D, held: D, avg_volume: D) -> ContractView:
    snap = MarketSnapshot(
        symbol=ETH.symbol,
        asof_ms=0,
        last_price=price,
        mark_price=price,
        volatility=D("0.5"),
        atr=price / D(100),
        funding=FUNDING,
        bar_hours=D(1),
        avg_volume=avg_volume,
    )
    pos = Position(ETH.symbol, held, price, D(3), MarginMode.ISOLATED) if held != 0 else None
    return ContractView(ETH.symbol, 1, True, D(125), ETH, snap, pos, None, sleeve)


@given(
    btc_share=st.decimals(min_value=D(0), max_value=D("1.5"), places=2),
    eth_share=st.decimals(min_value=D(0), max_value=D("1.5"), places=2),
    btc_ratio=ratios,
    eth_ratio=ratios,
    gross=st.decimals(min_value=D("0.5"), max_value=D(8), places=2),
    budget=st.decimals(min_value=D(1000), max_value=D(500_000), places=0),
)
@settings(max_examples=100, deadline=None)
def test_the_cap_composes_with_the_gross_cap_and_the_loss_budget(
    btc_share: D, eth_share: D, btc_ratio: D, eth_ratio: D, gross: D, budget: D
) -> None:
    """decide (hard caps, then participation), then the gross cap, then the loss budget, as the
    tick runs them: each later cut only lowers a capped step, so no contract adds more than its
    room, and the gross cap and the budget still hold with the room one contract leaves used
    by the other."""
    fraction = D("0.01")
    sleeve, btc_price, eth_price = D(1_000_000), D(50000), D(2500)
    free = decide(
        [view(btc_price, sleeve, D(0), None), eth_view(eth_price, sleeve, D(0), D(1))], STATIC
    )
    btc_held = BTC.floor_qty(abs(free[0].target_qty) * btc_share)
    eth_held = ETH.floor_qty(abs(free[1].target_qty) * eth_share)
    btc_avg = (abs(free[0].target_qty) * btc_ratio / fraction).quantize(D("0.001"))
    eth_avg = (abs(free[1].target_qty) * eth_ratio / fraction).quantize(D("0.001"))
    views = [
        view(btc_price, sleeve, btc_held, btc_avg),
        eth_view(eth_price, sleeve, eth_held, eth_avg),
    ]
    instruments = {BTC.symbol: BTC, ETH.symbol: ETH}
    held = {BTC.symbol: btc_held, ETH.symbol: eth_held}
    prices = {BTC.symbol: btc_price, ETH.symbol: eth_price}
    equity = 2 * sleeve
    decided = decide(views, with_orders(STATIC, max_participation=fraction))
    grossed = cap_to_gross(decided, held, prices, instruments, gross * equity)
    final = cap_to_loss_budget(grossed, prices, instruments, budget, D("0.001"))
    for d, v in zip(final, views, strict=True):
        have = held[d.symbol]
        room = instruments[d.symbol].floor_qty(fraction * (v.market.avg_volume or D(0)))
        assert abs(d.target_qty) - have <= room
    increases = any(abs(d.target_qty) > held[d.symbol] for d in final)
    worst = sum((max(abs(d.target_qty), held[d.symbol]) * prices[d.symbol] for d in final), D(0))
    if increases:
        assert worst <= gross * equity
