"""Margin mathematics checked against hand-worked Binance USD-M examples.

All examples use the bundled Binance BTC/USDT:USDT brackets (leverageBracket, 2026-03-26):

    bracket  notional range          max lev  MMR     cum
    1        [0, 300 000)            150x     0.004   0
    2        [300 000, 800 000)      100x     0.005   300
    3        [800 000, 3 000 000)    75x      0.0065  1 500

Binance's one-way formula: LP = (WB - TMM1 + UPNL1 + cum - side*|q|*EP) / (|q|*MMR - side*|q|).
"""

from __future__ import annotations

from decimal import Decimal
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.instrument import Bracket, Instrument, MarginModel
from bot.domain.margin import (
    initial_margin,
    isolated_liquidation_distance,
    liquidation_price_cross,
    liquidation_price_isolated,
    maintenance_margin,
    margin_ratio,
    max_leverage_with_liquidation_beyond,
)
from bot.instruments import instrument_for, load_instruments

D = Decimal
BTC = instrument_for("binanceusdm", "BTC/USDT:USDT")
TOLERANCE = D("1e-18")
ZERO = D(0)


def _margin_surplus_at(
    instrument: Instrument, qty: Decimal, entry: Decimal, balance: Decimal, price: Decimal
) -> Decimal:
    """Margin balance minus maintenance at ``price``: zero exactly at the liquidation price."""
    return balance + qty * (price - entry) - maintenance_margin(instrument, qty * price)


def test_bundled_btc_table_is_the_one_the_examples_assume() -> None:
    first, second, third = BTC.brackets[:3]
    assert (first.notional_cap, first.maint_margin_rate, first.maint_amount) == (
        D(300000),
        D("0.004"),
        D(0),
    )
    assert (second.notional_cap, second.maint_margin_rate, second.maint_amount) == (
        D(800000),
        D("0.005"),
        D(300),
    )
    assert (third.maint_margin_rate, third.maint_amount) == (D("0.0065"), D(1500))


# ----------------------------------------------------------------------- worked isolated examples


def test_isolated_long_bracket_1() -> None:
    # Long 1 BTC at 60 000 with 6 000 USDT isolated margin (10x).
    # Bracket 1 (MMR 0.004, cum 0): LP = (6000 + 0 - 1*1*60000) / (1*0.004 - 1*1)
    #                                 = -54000 / -0.996 = 54216.8674698795...
    # Notional at LP = 54 216.87 < 300 000: bracket 1 is consistent.
    lp = liquidation_price_isolated(BTC, D(1), D(60000), D(6000))
    assert lp is not None
    assert abs(lp - D("54216.86746987951807228915663")) < D("1e-20")
    assert abs(_margin_surplus_at(BTC, D(1), D(60000), D(6000), lp)) < TOLERANCE


def test_isolated_short_bracket_1() -> None:
    # Short 1 BTC at 60 000 with 6 000 USDT isolated margin (10x), side = -1.
    # LP = (6000 + 0 + 1*60000) / (1*0.004 + 1) = 66000 / 1.004 = 65737.0517928286...
    lp = liquidation_price_isolated(BTC, D(-1), D(60000), D(6000))
    assert lp is not None
    assert abs(lp - D("65737.05179282868525896414343")) < D("1e-20")
    assert abs(_margin_surplus_at(BTC, D(-1), D(60000), D(6000), lp)) < TOLERANCE


def test_isolated_long_in_bracket_2_uses_cum() -> None:
    # Long 10 BTC at 60 000 = 600 000 notional, 60 000 USDT margin (10x).
    # Bracket 1 try: (60000 - 600000) / (10*0.004 - 10) = 54216.87 -> notional 542 168.67,
    #   outside [0, 300 000): rejected.
    # Bracket 2:     (60000 + 300 - 600000) / (10*0.005 - 10) = -539700 / -9.95
    #              = 54241.2060301507... -> notional 542 412.06 in [300 000, 800 000): accepted.
    # Without cum it would be -540000 / -9.95 = 54271.36, 30 USDT too high.
    lp = liquidation_price_isolated(BTC, D(10), D(60000), D(60000))
    assert lp is not None
    assert abs(lp - D("54241.20603015075376884422111")) < D("1e-20")
    assert BTC.bracket_for(D(10) * lp) is BTC.brackets[1]


def test_isolated_long_liquidates_in_a_lower_bracket_than_at_entry() -> None:
    # Long 5 BTC at 64 000 = 320 000 notional (bracket 2 at entry), 32 000 USDT margin.
    # Bracket 2 try: (32000 + 300 - 320000) / (5*0.005 - 5) = -287700 / -4.975 = 57829.15
    #   -> notional 289 145.73 < 300 000: not bracket 2, rejected.
    # Bracket 1:     (32000 - 320000) / (5*0.004 - 5) = -288000 / -4.98 = 57831.3253012...
    #   -> notional 289 156.63 in bracket 1: accepted.
    lp = liquidation_price_isolated(BTC, D(5), D(64000), D(32000))
    assert lp is not None
    assert abs(lp - D("57831.32530120481927710843373")) < D("1e-20")
    assert BTC.bracket_for(D(5) * lp) is BTC.brackets[0]


def test_isolated_short_liquidates_in_a_higher_bracket_than_at_entry() -> None:
    # Short 4.5 BTC at 64 000 = 288 000 notional (bracket 1), 28 800 USDT margin.
    # Bracket 1 try: (28800 + 288000) / (4.5*1.004) = 316800 / 4.518 = 70119.52
    #   -> notional 315 537.85 >= 300 000: rejected.
    # Bracket 2:     (28800 + 300 + 288000) / (4.5*1.005) = 317100 / 4.5225 = 70116.0862354...
    #   -> notional 315 522.39 in bracket 2: accepted.
    lp = liquidation_price_isolated(BTC, D("-4.5"), D(64000), D(28800))
    assert lp is not None
    assert abs(lp - D("70116.08623548922056384742952")) < D("1e-20")
    assert BTC.bracket_for(D("4.5") * lp) is BTC.brackets[1]


def test_root_exactly_on_a_bracket_floor_is_found() -> None:
    # Choose the margin so the long liquidates at exactly 300 000 notional (qty 10, LP 30 000):
    # WB = |q|*(EP - LP) + MM(300 000) = 10*(60000 - 30000) + (300000*0.005 - 300) = 301 200.
    lp = liquidation_price_isolated(BTC, D(10), D(60000), D(301200))
    assert lp == D(30000)


# ----------------------------------------------------------------------------- no liquidation


def test_flat_position_has_no_liquidation_price() -> None:
    assert liquidation_price_isolated(BTC, D(0), D(60000), D(100)) is None
    assert liquidation_price_cross(BTC, D(0), D(60000), D(100), D(0), D(0)) is None


def test_long_fully_margined_has_no_liquidation_price() -> None:
    # 1x long: margin 60 000 = notional -> (60000 - 60000) / (0.004 - 1) = 0: no positive price.
    assert liquidation_price_isolated(BTC, D(1), D(60000), D(60000)) is None
    assert liquidation_price_isolated(BTC, D(1), D(60000), D(90000)) is None


def test_long_just_under_full_margin_has_a_tiny_liquidation_price() -> None:
    # margin 59 900: LP = (59900 - 60000) / (0.004 - 1) = 100 / 0.996 = 100.40...
    lp = liquidation_price_isolated(BTC, D(1), D(60000), D(59900))
    assert lp is not None
    assert D(100) < lp < D(101)


def test_negative_margin_is_rejected_with_a_message() -> None:
    with pytest.raises(ValueError, match=r"isolated_margin must be >= 0, got -1"):
        liquidation_price_isolated(BTC, D(1), D(60000), D(-1))
    with pytest.raises(ValueError, match=r"wallet_balance must be >= 0"):
        liquidation_price_cross(BTC, D(1), D(60000), D(-5), D(0), D(0))
    with pytest.raises(ValueError, match=r"other_maintenance must be >= 0"):
        liquidation_price_cross(BTC, D(1), D(60000), D(5), D(-1), D(0))


def test_non_positive_entry_price_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"BTC/USDT:USDT: entry_price must be > 0, got 0"):
        liquidation_price_isolated(BTC, D(1), D(0), D(100))


# ------------------------------------------------------------------------------------- cross


def test_cross_long_with_another_losing_position() -> None:
    # Cross wallet 10 000. Other position: short 2 ETH entered at 2 400, mark 2 500:
    #   UPNL1 = -2 * (2500 - 2400) = -200; notional 5 000 -> TMM1 = 5000*0.004 - 0 = 20.
    # BTC long 1 at 60 000:
    #   LP = (10000 - 20 - 200 + 0 - 60000) / (0.004 - 1) = -50220 / -0.996 = 50421.6867469...
    eth = instrument_for("binanceusdm", "ETH/USDT:USDT")
    other_mm = maintenance_margin(eth, D(-2) * D(2500))
    assert other_mm == D(20)
    lp = liquidation_price_cross(BTC, D(1), D(60000), D(10000), other_mm, D(-200))
    assert lp is not None
    assert abs(lp - D("50421.68674698795180722891566")) < D("1e-20")
    # At LP the whole account sits exactly at maintenance: margin ratio 1.
    balance = D(10000) - D(200) + (lp - D(60000))
    total_mm = other_mm + maintenance_margin(BTC, lp)
    assert abs(margin_ratio(total_mm, balance) - 1) < TOLERANCE


def test_cross_with_no_other_positions_equals_isolated_with_the_same_wallet() -> None:
    cross = liquidation_price_cross(BTC, D(-3), D(61000), D(20000), D(0), D(0))
    assert cross == liquidation_price_isolated(BTC, D(-3), D(61000), D(20000))


def test_cross_short_of_an_account_already_under_water_is_an_error() -> None:
    # Other positions lose more than wallet + this short's notional can ever cover.
    with pytest.raises(ValueError, match=r"already liquidatable"):
        liquidation_price_cross(BTC, D(-1), D(60000), D(1000), D(500), D(-70000))


# -------------------------------------------------------------------------- maintenance margin


def test_maintenance_margin_examples() -> None:
    assert maintenance_margin(BTC, D(60000)) == D(240)  # 60 000 * 0.004 - 0
    assert maintenance_margin(BTC, D(-600000)) == D(2700)  # 600 000 * 0.005 - 300, sign ignored
    assert maintenance_margin(BTC, D(0)) == D(0)


@pytest.mark.parametrize(
    "exchange_symbol",
    [
        (exchange, symbol)
        for exchange in ("binanceusdm", "bybit")
        for symbol in sorted(load_instruments(exchange))
    ],
)
def test_maintenance_margin_is_continuous_at_every_bracket_floor(
    exchange_symbol: tuple[str, str],
) -> None:
    instrument = instrument_for(*exchange_symbol)
    # Bybit's maintenance margin also holds the fee to close (taker fee on the value): a line
    # through 0 with no tiers, continuous itself.
    fee = instrument.taker_fee if instrument.margin_model is MarginModel.BYBIT_UTA else D(0)
    for lower, upper in pairwise(instrument.brackets):
        floor = upper.notional_floor
        # The lower bracket's line evaluated at the floor equals the value at the floor.
        assert maintenance_margin(instrument, floor) == (
            floor * lower.maint_margin_rate - lower.maint_amount + floor * fee
        )
        just_below = floor - D("0.000001")
        assert instrument.bracket_for(just_below) is lower
        gap = maintenance_margin(instrument, floor) - maintenance_margin(instrument, just_below)
        assert D(0) < gap <= D("0.000001") * (lower.maint_margin_rate + fee)


def test_initial_margin_and_margin_ratio() -> None:
    assert initial_margin(D(-60000), D(10)) == D(6000)
    with pytest.raises(ValueError, match=r"leverage must be > 0"):
        initial_margin(D(1), D(0))
    assert margin_ratio(D(240), D(480)) == D("0.5")
    assert margin_ratio(D(0), D(-5)) == D(0)
    assert margin_ratio(D(1), D(0)) == Decimal("Infinity")
    with pytest.raises(ValueError, match=r"maintenance_total must be >= 0"):
        margin_ratio(D(-1), D(5))


# ---------------------------------------------------------------------------- max leverage


def _beyond(side: int, lp: Decimal | None, limit: Decimal, slack: Decimal = ZERO) -> bool:
    """``lp`` at or beyond ``limit``; ``slack`` forgives Decimal rounding (28 digits)."""
    if lp is None:
        return True  # never liquidated
    return lp <= limit + slack if side > 0 else lp >= limit - slack


def _lp_at(side: int, entry: Decimal, notional: Decimal, leverage: Decimal) -> Decimal | None:
    qty = side * notional / entry
    return liquidation_price_isolated(BTC, qty, entry, notional / leverage)


@pytest.mark.parametrize(
    ("side", "entry", "notional", "limit", "expected"),
    [
        # long: margin_min = 1*(60000 - 54000) + MM(54 000) = 6000 + 216 = 6216 -> 60000/6216
        #   = 9.6525... -> 9.65
        (1, D(60000), D(60000), D(54000), D("9.65")),
        # short: margin_min = -1*(60000 - 66000) + MM(66 000) = 6000 + 264 = 6264 -> 9.5785 -> 9.57
        (-1, D(60000), D(60000), D(66000), D("9.57")),
        # long far limit: margin_min = 59000 + MM(1000) = 59004 -> 1.0168... -> 1.01
        (1, D(60000), D(60000), D(1000), D("1.01")),
        # long, notional 600 000 in bracket 2, liquidation at 540 000 (also bracket 2):
        #   margin_min = 10*6000 + (540000*0.005 - 300) = 62400 -> 9.6153... -> 9.61
        (1, D(60000), D(600000), D(54000), D("9.61")),
    ],
)
def test_max_leverage_solver_is_tight(
    side: int, entry: Decimal, notional: Decimal, limit: Decimal, expected: Decimal
) -> None:
    leverage = max_leverage_with_liquidation_beyond(BTC, side, entry, notional, limit)
    assert leverage == expected
    assert _beyond(side, _lp_at(side, entry, notional, leverage), limit)
    assert not _beyond(side, _lp_at(side, entry, notional, leverage + D("0.01")), limit)


def test_max_leverage_is_capped_by_the_bracket() -> None:
    # Limit at entry: margin_min = MM(60 000) = 240 -> 250x, capped at bracket 1's 150x.
    assert max_leverage_with_liquidation_beyond(BTC, 1, D(60000), D(60000), D(60000)) == D(150)
    # Notional 600 000 is in bracket 2 (100x): margin_min = MM(600 000) = 2700 -> 222x -> 100x.
    capped = max_leverage_with_liquidation_beyond(BTC, 1, D(60000), D(600000), D(60000))
    assert capped == D(100)
    assert _beyond(1, _lp_at(1, D(60000), D(600000), capped), D(60000))


def test_max_leverage_is_zero_when_even_1x_liquidates_first() -> None:
    # Short, limit 150 000 (2.5x entry): margin_min = 90000 + MM(150 000) = 90600 > 60000.
    assert max_leverage_with_liquidation_beyond(BTC, -1, D(60000), D(60000), D(150000)) == 0
    # At 1x the short indeed liquidates before 150 000.
    lp = _lp_at(-1, D(60000), D(60000), D(1))
    assert lp is not None
    assert lp < D(150000)


def test_max_leverage_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"side must be \+1 \(long\) or -1 \(short\), got 0"):
        max_leverage_with_liquidation_beyond(BTC, 0, D(1), D(1), D(1))
    with pytest.raises(ValueError, match=r"limit_price must be > 0, got 0"):
        max_leverage_with_liquidation_beyond(BTC, 1, D(60000), D(60000), D(0))
    with pytest.raises(ValueError, match=r"notional must be > 0"):
        max_leverage_with_liquidation_beyond(BTC, 1, D(60000), D(0), D(50000))


@settings(max_examples=200)
@given(
    side=st.sampled_from([1, -1]),
    entry=st.decimals(min_value=D(100), max_value=D(200000), places=1),
    notional=st.decimals(min_value=D(100), max_value=D(5000000), places=2),
    distance=st.decimals(min_value=D("0.001"), max_value=D("0.9"), places=3),
)
def test_max_leverage_property(
    side: int, entry: Decimal, notional: Decimal, distance: Decimal
) -> None:
    limit = entry * (1 - side * distance)
    leverage = max_leverage_with_liquidation_beyond(BTC, side, entry, notional, limit)
    assert leverage >= 1  # within 90 % of entry even a short qualifies at 1x
    # A result exactly on the 0.01 grid liquidates exactly at the limit; allow for rounding.
    assert _beyond(side, _lp_at(side, entry, notional, leverage), limit, limit * D("1e-20"))
    if leverage < BTC.max_leverage_for(notional):
        assert not _beyond(side, _lp_at(side, entry, notional, leverage + D("0.01")), limit)


# ----------------------------------------------------------------------- liquidation distance


def test_isolated_liquidation_distance() -> None:
    # 10x, notional 60 000, bracket 1: long (0.1 + 0 - 0.004) / 0.996 = 0.0963855...,
    # short 0.096 / 1.004 = 0.0956175...; the default is the smaller (short) one.
    long_d = isolated_liquidation_distance(BTC, D(10), D(60000), 1)
    short_d = isolated_liquidation_distance(BTC, D(10), D(60000), -1)
    assert abs(long_d - D("0.096") / D("0.996")) < TOLERANCE
    assert abs(short_d - D("0.096") / D("1.004")) < TOLERANCE
    assert isolated_liquidation_distance(BTC, D(10), D(60000)) == short_d
    # Matches the liquidation price of a real position.
    lp = liquidation_price_isolated(BTC, D(1), D(60000), D(6000))
    assert lp is not None
    assert abs((D(60000) - lp) / D(60000) - long_d) < TOLERANCE
    # A 1x long cannot be liquidated: the price would have to reach zero.
    assert isolated_liquidation_distance(BTC, D(1), D(60000), 1) == 1


# ------------------------------------------------------------------------------ properties

QTY = st.decimals(min_value=D("0.001"), max_value=D(100), places=3)
PRICE = st.decimals(min_value=D(1000), max_value=D(150000), places=1)
FRACTION = st.decimals(min_value=D(0), max_value=D(2), places=4)


@settings(max_examples=300)
@given(qty=QTY, entry=PRICE, extra_a=FRACTION, extra_b=FRACTION)
def test_more_margin_never_raises_a_long_liquidation_price(
    qty: Decimal, entry: Decimal, extra_a: Decimal, extra_b: Decimal
) -> None:
    notional = qty * entry
    low, high = sorted((extra_a, extra_b))
    lp_low = liquidation_price_isolated(BTC, qty, entry, notional * low)
    lp_high = liquidation_price_isolated(BTC, qty, entry, notional * high)
    if lp_low is None:
        assert lp_high is None
    elif lp_high is not None:
        assert lp_high <= lp_low


@settings(max_examples=300)
@given(qty=QTY, entry=PRICE, side=st.sampled_from([1, -1]), extra=FRACTION)
def test_liquidation_price_is_on_the_losing_side_of_entry(
    qty: Decimal, entry: Decimal, side: int, extra: Decimal
) -> None:
    # Any margin at least the initial margin at the bracket's max leverage (> maintenance).
    notional = qty * entry
    margin = notional / BTC.max_leverage_for(notional) + notional * extra
    lp = liquidation_price_isolated(BTC, side * qty, entry, margin)
    if side > 0:
        assert lp is None or D(0) < lp < entry
    else:
        assert lp is not None
        assert lp > entry
    if lp is not None:
        assert abs(_margin_surplus_at(BTC, side * qty, entry, margin, lp)) < D("1e-15")


def test_works_with_a_hand_built_instrument() -> None:
    # Two brackets: [0, 1000) MMR 1 % cum 0; [1000, inf) MMR 5 %, cum 1000*(0.05-0.01) = 40.
    toy = Instrument(
        symbol="TOY/USDT:USDT",
        base="TOY",
        quote="USDT",
        tick_size=D("0.01"),
        step_size=D(1),
        min_qty=D(1),
        min_notional=D(5),
        brackets=(
            Bracket(D(0), D(1000), D(50), D("0.01"), D(0)),
            Bracket(D(1000), D(10**9), D(10), D("0.05"), D(40)),
        ),
        maker_fee=D(0),
        taker_fee=D(0),
        liquidation_fee=D(0),
    )
    # Short 100 at 10 with margin 100: bracket 1 gives (100 + 1000) / 101 = 10.89 -> notional
    # 1089 >= 1000, rejected; bracket 2: (100 + 40 + 1000) / 105 = 10.857142... -> 1085.7.
    lp = liquidation_price_isolated(toy, D(-100), D(10), D(100))
    assert lp == D(1140) / D(105)
