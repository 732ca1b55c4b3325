"""The hedge decision (pure) and the gate's hedge check: arithmetic in the reason, the band, the
cooldown, the funding-aware choice, and the property that a hedge never adds market exposure."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config.loader import load_policy
from bot.config.policy import Policy
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType, TradingState
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.domain.orders import OrderRequest
from bot.domain.position import Position
from bot.instruments import load_instruments
from bot.policy.hedge import (
    BookLeg,
    HedgeInputs,
    HedgeLeg,
    HeldLeg,
    cut_without_statistics,
    decide_hedge,
    desired_net,
)
from bot.risk.gate import OrderContext, check_hedge
from bot.risk.limits import RiskLimits

ROOT = Path(__file__).resolve().parents[2]
HEDGED = load_policy(ROOT / "policies" / "vol_target_hedged.toml")
INSTRUMENTS = load_instruments("binanceusdm")
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


def policy(**hedge: object) -> Policy:
    assert HEDGED.hedge is not None
    params = HEDGED.hedge.model_copy(update=hedge)
    return HEDGED.model_copy(update={"hedge": params})


def snap(symbol: str, price: D, rate: D = D(0)) -> MarketSnapshot:
    return MarketSnapshot(
        symbol=symbol,
        asof_ms=0,
        last_price=price,
        mark_price=price,
        volatility=D("0.5"),
        atr=price * D("0.01"),
        funding=FundingInfo(rate, D(8), None),
        bar_hours=D(1),
    )


def leg(symbol: str, price: D, qty: D = D(0), beta: D = D(1), rate: D = D(0)) -> HedgeLeg:
    pos = Position(symbol, qty, price, D(10), MarginMode.ISOLATED) if qty else None
    return HedgeLeg(symbol, INSTRUMENTS[symbol], snap(symbol, price, rate), beta, pos, None)


def inputs(
    book_notional: D, legs: tuple[HedgeLeg, ...], equity: D = D(10000), **kw: object
) -> HedgeInputs:
    args: dict[str, object] = {
        "equity": equity,
        "book": (BookLeg("SOL/USDT:USDT", book_notional, D(1)),),
        "legs": legs,
        "now_ms": 10 * 3_600_000,
        "last_change_ms": None,
        "allow_increase": True,
        "max_leverage": D(5),
    }
    args.update(kw)
    return HedgeInputs(**args)  # type: ignore[arg-type]


def test_reason_shows_the_arithmetic() -> None:
    # Book 2.4x equity, target 0.5x, band 0.5: hedge 1.9x equity short in BTC.
    out = decide_hedge(
        inputs(D(24000), (leg(BTC, D(50000)),)), policy(target_net_exposure=D("0.5"))
    )
    (d,) = out.decisions
    assert d.target_qty == D("-0.38")  # 19000 / 50000
    assert "book beta-delta 2.40x equity, band 0.5 -> hedge -1.90x BTC" in d.reason
    assert d.stop_loss is not None
    assert d.stop_loss > D(50000)  # a short's stop is above
    assert out.net_after == D(5000)


def test_inside_the_band_keeps_the_hedge() -> None:
    held = leg(BTC, D(50000), D("-0.3"))  # net 24000 - 15000 = 0.9x, target 0.5, band 0.5
    out = decide_hedge(inputs(D(24000), (held,)), policy(target_net_exposure=D("0.5")))
    assert out.decisions[0].target_qty == D("-0.3")
    assert "inside the band" in out.decisions[0].reason


def test_cooldown_holds_the_hedge() -> None:
    p = policy(target_net_exposure=D(0), band=D("0.1"), cooldown_minutes=240)
    out = decide_hedge(inputs(D(24000), (leg(BTC, D(50000)),), last_change_ms=9 * 3_600_000), p)
    assert out.decisions[0].target_qty == 0
    assert "cooldown 180 min left" in out.decisions[0].reason


def test_beta_scales_the_book_and_the_hedge() -> None:
    book = (BookLeg("SOL/USDT:USDT", D(10000), D("1.5")),)
    out = decide_hedge(
        inputs(D(0), (leg(BTC, D(50000)),), book=book), policy(target_net_exposure=D(0))
    )
    assert out.book_beta_delta == D(15000)
    assert out.decisions[0].target_qty == D("-0.3")


def test_funding_aware_choice_says_why() -> None:
    # Shorts pay when funding is negative: BTC costs 0.1 %/8h, ETH (beta 1.2) is free.
    legs = (leg(BTC, D(50000), rate=D("-0.001")), leg(ETH, D(2500), beta=D("1.2")))
    p = policy(instruments=(BTC, ETH), max_funding_cost=D("0.001"), target_net_exposure=D(0))
    out = decide_hedge(inputs(D(12000), legs), p)
    btc, eth = out.decisions
    assert btc.target_qty == 0
    assert eth.target_qty == D("-4.000")  # 12000 / 1.2 / 2500
    assert "BTC funding 0.3000% over 24h > limit 0.1000% -> ETH (0.0000%)" in eth.reason


def test_switching_instrument_closes_the_old_leg() -> None:
    legs = (
        leg(BTC, D(50000), D("-0.2"), rate=D("-0.001")),
        leg(ETH, D(2500), beta=D(1)),
    )
    p = policy(instruments=(BTC, ETH), max_funding_cost=D("0.001"), target_net_exposure=D(0))
    out = decide_hedge(inputs(D(24000), legs), p)
    assert [d.target_qty for d in out.decisions] == [0, D("-9.600")]


def test_no_increase_allowed_never_drops_the_held_hedge_for_a_funding_switch() -> None:
    """Reducing (no increase allowed) with the primary's funding over the limit: the switch
    closed the held BTC short while the ETH leg it switched to could not open, the book
    unhedged (|net| 1.4x -> 2.4x equity). The held leg is kept instead."""
    legs = (
        leg(BTC, D(50000), D("-0.2"), rate=D("-0.001")),  # held short, shorts pay 0.1 %/8h
        leg(ETH, D(2500), beta=D(1)),
    )
    p = policy(instruments=(BTC, ETH), max_funding_cost=D("0.001"), target_net_exposure=D(0))
    # book 24000 long, hedge -10000: net 1.4x, outside the band: the hedge would grow.
    out = decide_hedge(inputs(D(24000), legs, allow_increase=False), p)
    btc, eth = out.decisions
    assert eth.target_qty == 0
    assert btc.target_qty == D("-0.2"), btc.reason
    assert out.net_after == out.net_before
    assert "ETH may take no new exposure now" in btc.reason
    assert "no increase allowed" in btc.reason


def test_a_funding_switch_passes_over_a_leg_that_may_not_open() -> None:
    """The cheaper leg's data is stale, or the venue restricts it, or it is in a re-entry
    cooldown: the hedge stays on the leg held, resized there."""
    legs = (
        leg(BTC, D(50000), D("-0.2"), rate=D("-0.001")),
        HedgeLeg(ETH, INSTRUMENTS[ETH], snap(ETH, D(2500)), D(1), None, None, may_open=False),
    )
    p = policy(instruments=(BTC, ETH), max_funding_cost=D("0.001"), target_net_exposure=D(0))
    out = decide_hedge(inputs(D(24000), legs), p)
    btc, eth = out.decisions
    assert eth.target_qty == 0
    assert btc.target_qty == D("-0.48")  # 24000 / 50000: the whole book, on BTC
    assert "ETH may take no new exposure now -> BTC (0.3000%)" in btc.reason


def test_the_hedge_held_on_the_alternative_stays_there_while_the_primary_may_not_open() -> None:
    """The primary's funding is back under the limit, but the primary may not open: going back
    to it would close the ETH leg held and open nothing."""
    legs = (
        HedgeLeg(BTC, INSTRUMENTS[BTC], snap(BTC, D(50000)), D(1), None, None, may_open=False),
        leg(ETH, D(2500), D("-4"), beta=D(1)),
    )
    p = policy(instruments=(BTC, ETH), max_funding_cost=D("0.001"), target_net_exposure=D(0))
    out = decide_hedge(inputs(D(24000), legs), p)
    btc, eth = out.decisions
    assert btc.target_qty == 0
    assert eth.target_qty == D("-9.600")  # 24000 / 2500
    assert "BTC may take no new exposure now, the hedge stays on ETH" in eth.reason


def test_with_no_book_a_hedge_smaller_than_the_band_is_closed() -> None:
    """The book is gone and the hedge left over, -0.4x equity, is inside the shipped band of
    0.5 around 0.5: it was kept, a naked short for as long as the book stayed out."""
    held = leg(BTC, D(50000), D("-0.08"))  # -4000: -0.4x of 10000, no book at all
    out = decide_hedge(inputs(D(0), (held,)), policy())  # the shipped target 0.5, band 0.5
    (d,) = out.decisions
    assert d.target_qty == 0, d.reason
    assert "the hedge adds exposure" in d.reason
    assert out.net_after == 0


def test_a_hedge_leaving_the_account_net_short_of_a_long_book_is_cut_inside_the_band() -> None:
    p = policy(target_net_exposure=D("0.5"), band=D("0.5"))
    # Book +1000, hedge -3000: net -0.2x, inside the band around 0.5; the book needs no hedge.
    out = decide_hedge(inputs(D(1000), (leg(BTC, D(50000), D("-0.06")),)), p)
    assert out.decisions[0].target_qty == 0, out.reason
    assert out.net_after == D(1000)
    # Book +1000, hedge -1250: net -0.025x; closing it would leave +0.1x, more than now: kept.
    out = decide_hedge(inputs(D(1000), (leg(BTC, D(50000), D("-0.025")),)), p)
    assert out.decisions[0].target_qty == D("-0.025")
    assert "inside the band, keep the hedge" in out.reason


def test_reducing_state_never_grows_the_hedge() -> None:
    held = leg(BTC, D(50000), D("-0.1"))
    out = decide_hedge(
        inputs(D(24000), (held,), allow_increase=False), policy(target_net_exposure=D(0))
    )
    assert out.decisions[0].target_qty == D("-0.1")
    assert "no increase allowed" in out.decisions[0].reason


@settings(max_examples=300)
@given(
    book=st.decimals(min_value=-60000, max_value=60000, places=0),
    held=st.decimals(min_value=-1, max_value=1, places=3),
    price=st.decimals(min_value=20000, max_value=120000, places=1),
    beta=st.decimals(min_value=D("0.3"), max_value=3, places=2),
    target=st.decimals(min_value=0, max_value=2, places=2),
    band=st.decimals(min_value=D("0.05"), max_value=1, places=2),
)
def test_the_hedge_never_increases_net_exposure(
    book: D, held: D, price: D, beta: D, target: D, band: D
) -> None:
    hedge_leg = leg(BTC, price, held)
    book_legs = (BookLeg("ETH/USDT:USDT", book, beta),)
    out = decide_hedge(
        inputs(D(0), (hedge_leg,), book=book_legs, max_leverage=D(125)),
        policy(target_net_exposure=target, band=band, min_notional=D(0)),
    )
    (d,) = out.decisions
    changed = d.target_qty != held
    want = desired_net(out.book_beta_delta, D(10000), target)
    step = INSTRUMENTS[BTC].step_size * price
    if changed:
        # A change only ever offsets the book: the hedge is on the other side of it...
        assert d.target_qty * out.book_beta_delta <= 0
        # ...it never leaves more exposure than the book alone (rounding: one step)...
        assert abs(out.net_after) <= abs(out.book_beta_delta) + step
        # ...and never moves the net exposure away from the target, nor above its start
        # unless toward the target.
        assert abs(out.net_after - want) <= abs(out.net_before - want) + step
        assert abs(out.net_after) <= max(abs(out.net_before), abs(want)) + step
    else:
        assert out.net_after == out.net_before


LIMITS = RiskLimits(
    max_leverage_per_contract=D(125),
    max_gross_leverage=D(125),
    max_notional_per_contract=D(10**9),
    daily_loss=D("0.5"),
    max_drawdown=D("0.5"),
    stale_data_ms=600_000,
    max_orders_per_minute=100,
    on_daily_loss="halted",
)


@settings(max_examples=300)
@given(
    other=st.decimals(min_value=-50000, max_value=50000, places=0),
    held=st.decimals(min_value=-1, max_value=1, places=3),
    amount=st.decimals(min_value=D("0.001"), max_value=2, places=3),
    buy=st.booleans(),
    reduce_only=st.booleans(),
)
def test_the_gate_refuses_hedge_orders_that_raise_net_exposure(
    other: D, held: D, amount: D, buy: bool, reduce_only: bool
) -> None:
    price = D(50000)
    req = OrderRequest(
        "cid",
        BTC,
        OrderSide.BUY if buy else OrderSide.SELL,
        OrderType.MARKET,
        OrderPurpose.ENTRY,
        amount,
        reduce_only=reduce_only,
    )
    ctx = OrderContext(
        TradingState.ACTIVE,
        0,
        0,
        price,
        held,
        D(10000),
        D(10000),
        D(0),
        D(125),
        hedge_net_other=other,
        monotonic_ms=0,
    )
    before = other + held * price
    after = other + (held + req.side.sign * amount) * price
    denied = check_hedge(req, ctx, LIMITS)
    if reduce_only:
        assert denied is None  # shrinking the hedge leg itself is never blocked
    else:
        assert (denied is not None) == (abs(after) > abs(before))


def test_gate_check_ignores_non_hedge_orders() -> None:
    req = OrderRequest("c", ETH, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D(1), False)
    ctx = OrderContext(
        TradingState.ACTIVE, 0, 0, D(2500), D(0), D(1), D(1), D(0), D(5), monotonic_ms=0
    )
    assert check_hedge(req, ctx, LIMITS) is None


def test_hedge_config_errors_are_named() -> None:
    with pytest.raises(ValueError, match="max_funding_cost"):
        policy(instruments=(BTC, ETH)).model_validate(
            {**HEDGED.model_dump(), "hedge": {"instruments": [BTC, ETH], "band": 0.5}}
        )
    with pytest.raises(ValueError, match="beta_min"):
        HEDGED.model_validate(
            {**HEDGED.model_dump(), "hedge": {"band": 0.5, "beta_min": 2, "beta_max": 1}}
        )


def held(qty: D, stop: D = D(55000)) -> HeldLeg:
    return HeldLeg(BTC, INSTRUMENTS[BTC], qty, D(50000), D(1), D(5), stop)


def test_without_statistics_a_hedge_larger_than_the_book_is_cut_and_its_stop_kept() -> None:
    """The book halved (its stops fired in part) while the hedge leg has no statistics: the
    hedge is cut to what the book needs, at the mark, its resting stop kept; never more."""
    p = policy(target_net_exposure=D(0), band=D("0.1"), cooldown_minutes=240)
    book = (BookLeg("SOL/USDT:USDT", D(5000), D(1)),)
    out = cut_without_statistics(
        D(10000), book, (held(D("-0.2")),), 10 * 3_600_000, 9 * 3_600_000, p, "no data for BTC"
    )
    assert out is not None
    (d,) = out.decisions
    assert d.target_qty == D("-0.1")  # 5000 / 50000: net -0.5x -> 0
    assert d.stop_loss == D(55000)
    assert not d.allow_increase
    assert "no data for BTC: only cuts" in d.reason
    assert "cooldown 180 min left: a cut is never delayed" in d.reason
    assert out.net_after == 0


@pytest.mark.parametrize(
    ("book", "qty"),
    [
        (D(10000), D("-0.2")),  # hedged as needed: net 0
        (D(10000), D("-0.19")),  # inside the band
        (D(20000), D("-0.2")),  # under-hedged: an increase needs the statistics
    ],
)
def test_without_statistics_nothing_but_a_cut_is_decided(book: D, qty: D) -> None:
    p = policy(target_net_exposure=D(0), band=D("0.1"))
    legs = (held(qty),)
    book_legs = (BookLeg("SOL/USDT:USDT", book, D(1)),)
    assert cut_without_statistics(D(10000), book_legs, legs, 0, None, p, "no data") is None


def test_a_leftover_hedge_below_min_notional_is_closed_while_the_book_is_out() -> None:
    """The shipped policy (target 0.5, band 0.5, min_notional 200) on a 1,000 USDT account:
    the hedge, 0.002 BTC short, is worth 150 USDT after the crash took BTC to 75,000, and the
    book's stops fired. The close is 150 < min_notional: it was filtered as a change too small
    to trade, and the leftover, inside the band, was kept tick after tick, a naked short for as
    long as the book stayed out. A close trades once; min_notional only stops churn."""
    orphan = leg(BTC, D(75000), qty=D("-0.002"))
    out = decide_hedge(inputs(D(0), (orphan,), equity=D(1000)), policy())
    (d,) = out.decisions
    assert d.target_qty == 0, d.reason
    assert "the hedge adds exposure" in d.reason
    assert out.net_after == 0
    # The same without the leg's statistics (a gap in its candles): the cut alone is decided.
    left = HeldLeg(BTC, INSTRUMENTS[BTC], D("-0.002"), D(75000), D(1), D(5), D(80000))
    cut = cut_without_statistics(D(1000), (), (left,), 0, None, policy(), "no data for BTC")
    assert cut is not None
    assert [x.target_qty for x in cut.decisions] == [0]
    assert cut.net_after == 0


def test_a_partial_cut_of_a_hedge_adding_exposure_still_waits_for_min_notional() -> None:
    """Book +6000, target 0, hedge -0.122 BTC at 50,000 (-6100): the account is net 100 short
    of a long book, so the hedge adds exposure; the cut to what the book needs (-0.12) trades
    100 < min_notional 200. It is no close: a change too small to trade, the hedge kept."""
    p = policy(target_net_exposure=D(0), band=D("0.2"), min_notional=D(200))
    out = decide_hedge(inputs(D(6000), (leg(BTC, D(50000), D("-0.122")),)), p)
    assert out.decisions[0].target_qty == D("-0.122"), out.reason
    assert "inside the band, keep the hedge" in out.reason
