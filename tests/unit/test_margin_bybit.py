"""Bybit's liquidation arithmetic (``MarginModel.BYBIT_UTA``), worked by hand.

Sources (Bybit help centre):

- https://www.bybit.com/en/help-center/article/Liquidation-Price-USDT-Contract (isolated):
  ``LP = EP - side * (IM - MM) / size``, ``MM = size * EP * MMR - deduction``: the maintenance
  margin on the position value at ENTRY. Its example 1: a long of 1 BTC at 20 000 at 50x,
  MMR 0.5 %: IM 400, MM 100, LP = 20 000 - (400 - 100) = 19 700.
- https://www.bybit.com/en/help-center/article/Liquidation-Price-Calculation-under-Isolated-Mode-Unified-Trading-Account
  (UTA): the maintenance margin also holds the estimated fee to close, the taker fee on the
  bankruptcy value (``size * EP * (1 - side/L)``); later versions of that page take the
  maintenance margin at the mark price (Binance's form).

The model returns the nearer to the entry of the two valuations, both with the fee (see
``bot.domain.margin._solve_bybit``): the entry valuation for a long, the mark valuation for a
short. Bundled Bybit BTC/USDT:USDT tiers (taker fee 0.055 %):

    tier  position value             MMR      deduction
    1     [0, 2 000 000]             0.5 %    0
    2     (2 000 000, 2 600 000]     0.56 %   1 200
    3     (2 600 000, 3 200 000]     0.63 %   3 020
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bot.catalogue import load_catalogue, write_catalogue
from bot.cli.app import app
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument, MarginModel
from bot.domain.margin import (
    cross_maintenance,
    isolated_liquidation_distance,
    liquidation_price_cross,
    liquidation_price_isolated,
    maintenance_margin,
    margin_ratio,
    max_leverage_with_liquidation_beyond,
    worst_margin,
)
from bot.domain.orders import OrderRequest
from bot.domain.position import Position
from bot.exchange.capabilities import BINANCE_USDM, BYBIT
from bot.instruments import instrument_for, load_instruments
from bot.sim.account_watch import cross_maintenance_one, cross_maintenance_vec, maintenance_vec
from bot.sim.triggers import process_bar
from tests.conftest import make_exchange

D = Decimal
SYMBOL = "BTC/USDT:USDT"
BYBIT_BTC = instrument_for("bybit", SYMBOL)
# The same contract and tiers on Binance's formula: what every Bybit contract used before.
AS_BINANCE = replace(BYBIT_BTC, margin_model=MarginModel.BINANCE_USDM)


def test_the_venue_decides_the_margin_model() -> None:
    assert BYBIT_BTC.margin_model is MarginModel.BYBIT_UTA
    assert instrument_for("binanceusdm", SYMBOL).margin_model is MarginModel.BINANCE_USDM
    # The live adapter and `bot contracts sync` build instruments from the venue's profile.
    assert BYBIT.margin_model is MarginModel.BYBIT_UTA
    assert BINANCE_USDM.margin_model is MarginModel.BINANCE_USDM


def test_a_users_bybit_catalogue_gets_bybits_model(tmp_path: Path) -> None:
    path = tmp_path / "bybit.json"
    write_catalogue(path, "bybit", {SYMBOL: (AS_BINANCE, "hand-written")}, 0, "test")
    loaded = load_catalogue(path, "bybit")
    assert loaded is not None
    assert loaded.instruments[SYMBOL].margin_model is MarginModel.BYBIT_UTA


def test_doc_example_1_long_50x_first_tier() -> None:
    # 1 BTC at 20 000, 50x: IM = 20 000 / 50 = 400; MM = 20 000 x 0.005 - 0 = 100.
    # Bybit's page (no fee): LP = 20 000 - (400 - 100) = 19 700.
    # UTA fee to close: bankruptcy value 20 000 - 400 = 19 600; fee 19 600 x 0.00055 = 10.78;
    # MM = 110.78; LP = 20 000 - (400 - 110.78) = 19 710.78.
    assert liquidation_price_isolated(BYBIT_BTC, D(1), D(20000), D(400)) == D("19710.78")
    # The mark valuation lies farther: (20 000 - 389.22) / (1 - 0.005) = 19 709.2261...
    # Binance's formula: (20 000 - 400) / 0.995 = 19 698.49..., 12.29 farther than Bybit's.
    assert liquidation_price_isolated(AS_BINANCE, D(1), D(20000), D(400)) == D(19600) / D("0.995")


def test_doc_example_1_mirrored_short_50x_first_tier() -> None:
    # Short 1 BTC at 20 000, 50x: bankruptcy value 20 000 + 400 = 20 400; fee 20 400 x 0.00055
    # = 11.22.
    # Entry valuation: MM = 100 + 11.22; LP = 20 000 + (400 - 111.22) = 20 288.78.
    # Mark valuation: margin left 400 - 11.22 = 388.78; (20 000 + 388.78) / (1 + 0.005)
    # = 20 287.3432835...: nearer, so it is the answer.
    lp = liquidation_price_isolated(BYBIT_BTC, D(-1), D(20000), D(400))
    assert lp == D("20388.78") / D("1.005")
    assert lp < D("20288.78")
    # Binance's formula: 20 400 / 1.005 = 20 298.507...
    assert liquidation_price_isolated(AS_BINANCE, D(-1), D(20000), D(400)) == D(20400) / D("1.005")


def test_long_10x_second_tier() -> None:
    # 40 BTC at 60 000 = 2 400 000 (tier 2), 10x: IM 240 000.
    # MM at entry = 2 400 000 x 0.0056 - 1 200 = 12 240.
    # Fee: bankruptcy value 2 400 000 - 240 000 = 2 160 000; x 0.00055 = 1 188.
    # LP = 60 000 - (240 000 - 12 240 - 1 188) / 40 = 60 000 - 226 572 / 40 = 54 335.7.
    assert liquidation_price_isolated(BYBIT_BTC, D(40), D(60000), D(240000)) == D("54335.7")
    # Binance's formula (tier 2 at the liquidation notional, ~2 170 000):
    # (2 400 000 - 240 000 - 1 200) / (40 x 0.9944) = 2 158 800 / 39.776 = 54 273.93...
    binance = liquidation_price_isolated(AS_BINANCE, D(40), D(60000), D(240000))
    assert binance == D(2158800) / D("39.776")


def test_short_10x_second_tier_liquidates_in_the_third() -> None:
    # Short 40 BTC at 60 000 (2 400 000, tier 2), 10x: IM 240 000.
    # Fee: bankruptcy value 2 400 000 + 240 000 = 2 640 000; x 0.00055 = 1 452.
    # Entry valuation: LP = 60 000 + (240 000 - 12 240 - 1 452) / 40 = 65 657.7.
    # Mark valuation: at ~65 600 the value is ~2 624 000, tier 3 (MMR 0.63 %, deduction 3 020):
    # (2 400 000 + 240 000 - 1 452 + 3 020) / (40 x 1.0063) = 2 641 568 / 40.252
    # = 65 625.757...; its value 2 625 030 lies in tier 3, and it is nearer: the answer.
    lp = liquidation_price_isolated(BYBIT_BTC, D(-40), D(60000), D(240000))
    assert lp == D(2641568) / D("40.252")
    assert lp < D("65657.7")
    assert BYBIT_BTC.bracket_for(D(40) * lp).maint_margin_rate == D("0.0063")


def test_10x_long_is_about_a_tenth_of_a_percent_nearer_than_binances() -> None:
    # 1 BTC at 60 000, 10x: fee (60 000 - 6 000) x 0.00055 = 29.7; MM 300;
    # LP = 60 000 - (6 000 - 300 - 29.7) = 54 329.7; Binance: 54 000 / 0.995 = 54 271.356...
    bybit = liquidation_price_isolated(BYBIT_BTC, D(1), D(60000), D(6000))
    binance = liquidation_price_isolated(AS_BINANCE, D(1), D(60000), D(6000))
    assert bybit == D("54329.7")
    assert binance is not None
    assert D("0.0009") < (bybit - binance) / D(60000) < D("0.001")
    # The distance of a fresh 10x long: 5 670.3 / 60 000.
    assert isolated_liquidation_distance(BYBIT_BTC, D(10), D(60000), 1) == D("0.094505")


def test_a_long_at_1x_has_bybits_liquidation_price() -> None:
    # The entry valuation keeps MM = value x MMR however low the price: at 1x (margin = value,
    # no bankruptcy price, no fee) LP = 60 000 - (60 000 - 300) = 300 = EP x MMR.
    assert liquidation_price_isolated(BYBIT_BTC, D(1), D(60000), D(60000)) == D(300)
    assert liquidation_price_isolated(AS_BINANCE, D(1), D(60000), D(60000)) is None
    assert liquidation_price_isolated(BYBIT_BTC, D(1), D(60000), D(60300)) is None


def test_cross_on_the_balance_and_the_others_fee_to_close() -> None:
    # Cross: the account's margin balance meets the position's maintenance as
    # position_maintenance holds it in cross: the larger of the tiered maintenance at entry and
    # at the mark, plus the fee to close on the value at the MARK (isolated: on the bankruptcy
    # value). 1 BTC at 60 000 on a wallet of 6 000: 6 000 + (P - 60 000) = 300 + 0.00055 P,
    # P = 54 300 / 0.99945 = 54 329.881...; the isolated position's 54 329.7 charges the fee on
    # the bankruptcy value 54 000, 0.18 less than on the mark's 54 329.88.
    alone = liquidation_price_cross(BYBIT_BTC, D(1), D(60000), D(6000), D(0), D(0))
    assert alone == D(54300) / D("0.99945")
    isolated = liquidation_price_isolated(BYBIT_BTC, D(1), D(60000), D(6000))
    assert isolated is not None
    assert alone is not None
    assert D("0.18") < alone - isolated < D("0.19")
    # Another position's maintenance holds its fee to close: 60 000 x (0.005 + 0.00055) = 333.
    assert maintenance_margin(BYBIT_BTC, D(-60000)) == D(333)
    assert maintenance_margin(AS_BINANCE, D(-60000)) == D(300)
    # Balance 6 000 + 1 000 - 333 = 6 667: P = (60 000 - 6 667 + 300) / 0.99945 = 53 662.514...
    # (53 662.33315 with the fee on the bankruptcy value).
    with_other = liquidation_price_cross(BYBIT_BTC, D(1), D(60000), D(6000), D(333), D(1000))
    assert with_other == D(53633) / D("0.99945")


def test_a_short_below_maintenance_at_every_price_is_refused() -> None:
    with pytest.raises(ValueError, match="already liquidatable"):
        liquidation_price_cross(BYBIT_BTC, D(-1), D(60000), D(100), D(500), D(-70000))


def test_max_leverage_for_a_stop_worked_example() -> None:
    # Long 10 000 at 60 000 (q = 1/6), stop 56 000. At the stop, with fee = 0.00055 x (10 000 -
    # M): M (1 + 0.00055) = q x 4 000 + max(MM(10 000), MM(q x 56 000)) + 0.00055 x 10 000
    # = 666.67 + 50 + 5.5 = 722.1667 -> M = 721.7697; L = 10 000 / M = 13.8548 -> 13.85.
    q = D(10000) / D(60000)
    lev = max_leverage_with_liquidation_beyond(BYBIT_BTC, 1, D(60000), D(10000), D(56000))
    assert lev == D("13.85")
    at = liquidation_price_isolated(BYBIT_BTC, q, D(60000), D(10000) / lev)
    above = liquidation_price_isolated(BYBIT_BTC, q, D(60000), D(10000) / D("13.86"))
    assert at is not None
    assert above is not None
    assert at <= D(56000) < above
    # Binance's formula allowed more: 14.01x.
    assert max_leverage_with_liquidation_beyond(AS_BINANCE, 1, D(60000), D(10000), D(56000)) == (
        D("14.01")
    )


@settings(max_examples=150, deadline=None)
@given(
    side=st.sampled_from([1, -1]),
    notional=st.decimals("100", "40000000", places=2),
    entry=st.decimals("0.5", "200000", places=2),
    limit_move=st.decimals("0.001", "0.6", places=4),
)
def test_max_leverage_puts_the_liquidation_at_or_beyond_the_limit(
    side: int, notional: Decimal, entry: Decimal, limit_move: Decimal
) -> None:
    limit = entry * (1 - side * limit_move)
    lev = max_leverage_with_liquidation_beyond(BYBIT_BTC, side, entry, notional, limit)
    if lev == 0:
        return
    q = notional / entry
    lp = liquidation_price_isolated(BYBIT_BTC, side * q, entry, notional / lev)
    assert lp is None or (lp <= limit if side > 0 else lp >= limit)
    if lev < BYBIT_BTC.max_leverage_for(notional):
        more = lev + D("0.01")
        nearer = liquidation_price_isolated(BYBIT_BTC, side * q, entry, notional / more)
        assert nearer is not None
        assert nearer > limit if side > 0 else nearer < limit


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from([1, -1]),
    symbol=st.sampled_from(sorted(load_instruments("bybit"))),
    value=st.decimals("10", "60000000", places=2),
    entry=st.decimals("0.01", "200000", places=2),
    margin_share=st.decimals("0.005", "1.5", places=4),
)
def test_bybits_liquidation_is_never_farther_from_entry_than_binances(
    side: int, symbol: str, value: Decimal, entry: Decimal, margin_share: Decimal
) -> None:
    """True by the formulas: the fee to close only adds to the maintenance margin, and the
    mark valuation with it is Binance's solve on a smaller balance; the answer is the nearer
    of that and the entry valuation. Strictly nearer wherever the fee is charged (a position
    with a bankruptcy price: every short, a long whose margin is below its value)."""
    bybit = load_instruments("bybit")[symbol]
    binance = replace(bybit, margin_model=MarginModel.BINANCE_USDM)
    qty = side * value / entry
    margin = value * margin_share
    try:
        theirs = liquidation_price_isolated(binance, qty, entry, margin)
    except ValueError:
        with pytest.raises(ValueError):
            liquidation_price_isolated(bybit, qty, entry, margin)
        return
    ours = liquidation_price_isolated(bybit, qty, entry, margin)
    if side > 0:
        assert theirs is None or (ours is not None and ours > theirs)
    else:
        assert theirs is not None
        assert ours is not None
        assert ours < theirs


def _entry(amount: str) -> OrderRequest:
    return OrderRequest(
        "e", SYMBOL, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D(amount), False
    )


@pytest.mark.parametrize(
    ("instrument", "liquidated"), [(BYBIT_BTC, True), (AS_BINANCE, False)], ids=["bybit", "binance"]
)
def test_the_simulated_exchange_liquidates_a_bybit_position_at_bybits_price(
    instrument: object, liquidated: bool
) -> None:
    """1 BTC long at 60 000 at 10x (margin 6 000): Bybit liquidates at 54 329.7, Binance's
    formula at 54 271.36. A bar down to 54 300 liquidates the Bybit position."""
    ex, _ = make_exchange({SYMBOL: instrument}, balance="10000")  # type: ignore[dict-item]
    ex.set_mark(SYMBOL, D(60000))
    ex.set_leverage(SYMBOL, 10)
    ex.place_order(_entry("1"))
    pos = ex.book.positions[SYMBOL]
    assert (pos.entry_price, pos.isolated_margin) == (D(60000), D(6000))
    process_bar(ex, SYMBOL, ex.clock.now_ms(), D(60000), D(60000), D(54300), D(54400))
    assert (ex.book.positions[SYMBOL].qty == 0) is liquidated
    assert ([e.kind for e in ex.events] == ["liquidation"]) is liquidated


def test_bot_calc_on_a_bybit_contract_shows_bybits_liquidation_price() -> None:
    args = ["calc", "--exchange", "bybit", "--contract", SYMBOL, "--side", "long"]
    args += ["--entry", "60000", "--leverage", "10", "--balance", "6000", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # 1 BTC at 10x: 54 329.7 (above), on the 0.1 tick already; Binance's would be 54 271.35...
    assert data["liquidation_price"] == "54329.7"
    # maintenance margin on Bybit's UTA: 60 000 x 0.005 + the fee to close 60 000 x 0.00055
    assert data["maintenance_margin"] == "333"


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([1, -1]),
    st.decimals(D("0.01"), D("60"), places=2),
    st.integers(2, 50),
    st.sampled_from([BYBIT_BTC, AS_BINANCE]),
)
def test_the_margin_ratio_reaches_one_at_the_liquidation_price(
    side: int, qty: Decimal, leverage: int, inst: Instrument
) -> None:
    """The ratio the alerts, the dashboard and `bot stress` show is 1 where the position is
    liquidated, on either venue's formula. Valued at the mark alone a Bybit long read about
    0.91 at its liquidation price at 10x (1 BTC at 60 000: 301.5 of maintenance and fee on
    329.7 of margin left) and 0.53 at 2x, so the 0.8 alert came late or never."""
    entry = D(60000)
    margin = qty * entry / leverage
    if inst.bracket_for(qty * entry).max_leverage < leverage:
        return
    pos = Position(SYMBOL, side * qty, entry, D(leverage), MarginMode.ISOLATED, margin)
    liq = liquidation_price_isolated(inst, pos.qty, entry, margin)
    assert liq is not None
    worst = worst_margin([(pos, inst, liq)], D(10**9))
    assert worst is not None
    assert worst.where == SYMBOL
    assert abs(worst.ratio - 1) < D("1e-9")


def test_bot_stress_reads_a_cross_bybit_long_as_the_alerts_do() -> None:
    """`bot stress` on a cross book: the margin ratio of a Bybit long after a fall is the one the
    alerts and the dashboard show (:func:`worst_margin`: maintenance held to the value at
    entry), not the smaller one of the value at the mark alone, which read a long a third
    farther from its liquidation than the venue holds it."""
    from bot.sim.exchange import SimulatedExchange
    from bot.tools.stress import _margin_ratio
    from tests.conftest import make_exchange

    ex: SimulatedExchange
    ex, _ = make_exchange({SYMBOL: BYBIT_BTC}, balance="20000", mode=MarginMode.CROSS)
    ex.set_mark(SYMBOL, D(60000))
    ex.set_leverage(SYMBOL, 5)
    ex.place_order(
        OrderRequest(
            "long", SYMBOL, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D(1), False
        )
    )
    ex.set_mark(SYMBOL, D(45000))
    pos = ex.fetch_positions([SYMBOL])[SYMBOL]
    assert pos.qty == 1
    worst = worst_margin([(pos, BYBIT_BTC, D(45000))], ex.fetch_balance().wallet)
    assert worst is not None
    # 60 000 x 0.5 % + the fee to close 45 000 x 0.055 %, on the wallet less the 15 000 lost
    assert worst.maintenance == D(300) + D(45000) * BYBIT_BTC.taker_fee
    assert _margin_ratio(ex) == worst.ratio


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([1, -1]),
    st.decimals(D("0.01"), D("60"), places=2),
    st.integers(2, 50),
    st.sampled_from([BYBIT_BTC, AS_BINANCE]),
)
def test_a_cross_accounts_margin_ratio_reaches_one_at_the_cross_liquidation_price(
    side: int, qty: Decimal, leverage: int, inst: Instrument
) -> None:
    """A cross account holding one position: its margin ratio (the simulated exchange's
    maintenance_total, position_maintenance of each position, over its margin balance) is 1
    at the liquidation price margin.py gives, on either venue's formula, as for an isolated
    position above. Bybit's cross solve charged the fee to close on the bankruptcy value (an
    isolated position's) where the account's maintenance charges it on the value at the mark:
    a long's ratio read 1.00055 at its liquidation price at 10x."""
    entry = D(60000)
    if inst.bracket_for(qty * entry).max_leverage < leverage:
        return
    ex, _ = make_exchange({SYMBOL: inst}, balance=str(qty * entry), mode=MarginMode.CROSS)
    ex.set_mark(SYMBOL, entry)
    ex.set_leverage(SYMBOL, leverage)
    side_ = OrderSide.BUY if side > 0 else OrderSide.SELL
    ex.place_order(
        OrderRequest("e", SYMBOL, side_, OrderType.MARKET, OrderPurpose.ENTRY, qty, False)
    )
    ex.book.wallet = qty * entry / leverage  # the initial margin is the whole collateral
    liq = ex.book.liquidation_price(SYMBOL, ex.marks)
    assert liq is not None
    assert liq == liquidation_price_cross(inst, side * qty, entry, ex.book.wallet, D(0), D(0))
    ex.marks[SYMBOL] = liq  # not set_mark: that would liquidate the account
    assert abs(margin_ratio(ex.maintenance_total(), ex.equity()) - 1) < D("1e-9")


@settings(max_examples=300, deadline=None)
@given(
    symbol=st.sampled_from(sorted(load_instruments("bybit"))),
    bybit=st.booleans(),
    qty=st.decimals("-3000", "3000", places=3).filter(lambda q: q != 0),
    entry=st.decimals("0.5", "200000", places=2),
    move=st.decimals("-0.95", "3", places=4),
)
def test_the_float_search_values_cross_maintenance_as_the_domain_does(
    symbol: str, bybit: bool, qty: Decimal, entry: Decimal, move: Decimal
) -> None:
    """The simulated exchange's float search for a cross account's liquidation (account_watch)
    takes each position's maintenance as :func:`cross_maintenance` does (a Bybit long held to
    its value at entry), the one-price bound bit for bit as the vectorised one, and a Binance
    contract's exactly as before (the value at the price alone)."""
    inst = load_instruments("bybit")[symbol]
    if not bybit:
        inst = replace(inst, margin_model=MarginModel.BINANCE_USDM)
    mark = entry * (1 + move)
    q, e, p = float(qty), float(entry), float(mark)
    vec = float(cross_maintenance_vec(inst, q, e, np.array([p]))[0])
    assert vec == cross_maintenance_one(inst, q, e, p)
    exact = float(cross_maintenance(inst, qty, entry, mark))
    assert abs(vec - exact) <= 1e-12 * abs(q) * max(e, p)
    if not bybit:
        assert vec == float(maintenance_vec(inst, q * np.array([p]))[0])
