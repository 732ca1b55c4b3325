"""Cross margin is a property of the account: it is liquidated whole, at the marks of that moment,
and never pays out after its losses exceeded the wallet. Isolated keeps per-position liquidation.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from bot.clock import SimClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import OrderRequest
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from bot.sim.triggers import GuardHit, TriggerSeries, advance
from bot.tools.scenarios import Scenario
from bot.tools.stress import apply_scenario

BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
SOL = "SOL/USDT:USDT"
T0 = 1_750_000_000_000 - 1_750_000_000_000 % 3_600_000
# Fee-free instruments so the hand computations below only carry the liquidation fee.
KNOWN = {
    s: replace(i, taker_fee=Decimal(0))
    for s, i in load_instruments("binanceusdm").items()
    if s in (BTC, ETH, SOL)
}


def open_book(
    book: dict[str, tuple[Decimal, Decimal]], wallet: str, mode: MarginMode, leverage: int = 20
) -> SimulatedExchange:
    """A fresh exchange holding ``book`` (symbol -> (signed qty, entry price)), marks at entry."""
    ex = SimulatedExchange(
        dict(KNOWN), SimClock(T0), starting_balance=Decimal(wallet), margin_mode=mode
    )
    for n, (sym, (qty, price)) in enumerate(book.items()):
        ex.marks[sym] = ex.lasts[sym] = price
        ex.set_leverage(sym, leverage)
        side = OrderSide.BUY if qty > 0 else OrderSide.SELL
        ex.place_order(
            OrderRequest(
                f"open-{n}", sym, side, OrderType.MARKET, OrderPurpose.ENTRY, abs(qty), False
            )
        )
    return ex


def test_worked_example_the_issue_book_both_down_50_percent() -> None:
    """Long 0.5 BTC @ 60,000 and short 5 ETH @ 3,000 on a 5,000 USDT cross wallet; both fall 50 %.

    By hand: BTC -> 30,000: the long loses 0.5 x 30,000 = 15,000; ETH -> 1,500: the short gains
    5 x 1,500 = 7,500. Equity = 5,000 - 15,000 + 7,500 = -2,500 < maintenance
    (0.4 % x 15,000 + 0.4 % x 7,500 = 90): the account is liquidated at those marks.
    Net PnL = -15,000 + 7,500 = -7,500: the wallet pays 5,000 and ends at 0; the insurance fund
    takes the loss beyond it, 2,500. Nothing is left for the liquidation fees (1.25 %: 187.50
    and 93.75), so none is charged. (Before: +7,406 from the per-leg liquidation.)
    """
    ex = open_book(
        {BTC: (Decimal("0.5"), Decimal(60000)), ETH: (Decimal(-5), Decimal(3000))},
        "5000",
        MarginMode.CROSS,
    )
    apply_scenario(ex, Scenario("both -50%", "move", {BTC: Decimal("-0.5"), ETH: Decimal("-0.5")}))
    assert ex.equity() == 0
    assert ex.book.wallet == 0
    assert ex.insurance_shortfall == Decimal(2500)
    assert all(p.qty == 0 for p in ex.book.positions.values())
    liq = {f.symbol: f for f in ex.fills if f.liquidation}
    assert liq[BTC].price == Decimal(30000)
    assert liq[ETH].price == Decimal(1500)
    assert liq[BTC].realized_pnl == Decimal(-15000)
    assert liq[ETH].realized_pnl == Decimal(7500)


def test_worked_example_inside_one_candle_on_the_joint_adverse_path() -> None:
    """The same book, one 1-minute candle: BTC open 60,000, low 52,000; ETH open 3,000, high 3,300.

    Alone, neither move liquidates (BTC at 52,000 with ETH at 3,000: equity 1,000 > maintenance
    164; ETH at 3,300 with BTC at 60,000: equity 3,500). Together at their adverse extremes:
    5,000 - 4,000 - 1,500 = -500 < maintenance 0.4 % x (26,000 + 16,500) = 170.
    On the straight joint path (fraction t from the opens to the extremes) equity is
    5,000 - 5,500 t and maintenance 180 - 10 t; they meet at t = 4,820 / 5,490 = 0.877960,
    where BTC = 60,000 - 8,000 t = 52,976.32 and ETH = 3,000 + 300 t = 3,263.388. The fills are
    on the tick, against the account: BTC sold at 52,976.3, ETH bought back at 3,263.39. Equity
    there is 5,000 - 0.5 x 7,023.7 - 5 x 263.39 = 171.20, less than the liquidation fees
    (1.25 % of 26,488.15 + 16,316.95 = 331.101875 + 203.961875 = 535.06375): the fees take the
    171.20 the wallet still holds, in proportion, rounded down to 10 places (BTC 171.20 x
    331.101875 / 535.06375 = 105.9399763112, ETH 65.2600236887; the 0.0000000001 left goes to
    the larger fee, BTC's), the wallet ends at 0 and the insurance fund takes nothing: the
    account never lost more than its wallet.
    """
    ex = open_book(
        {BTC: (Decimal("0.5"), Decimal(60000)), ETH: (Decimal(-5), Decimal(3000))},
        "5000",
        MarginMode.CROSS,
    )
    ts = np.array([T0], dtype=np.int64)

    def bar(o: float, h: float, low: float, c: float) -> TriggerSeries:
        return TriggerSeries(
            ts, np.array([o]), np.array([h]), np.array([low]), np.array([c]), 60_000, "mark"
        )

    series = {BTC: bar(60000, 60000, 52000, 59000), ETH: bar(3000, 3300, 3000, 3010)}
    advance(ex, series, {}, T0 + 60_000)
    liq = {f.symbol: f for f in ex.fills if f.liquidation}
    assert set(liq) == {BTC, ETH}
    assert liq[BTC].price == Decimal("52976.3")
    assert liq[ETH].price == Decimal("3263.39")
    assert ex.book.wallet == 0
    assert ex.insurance_shortfall == 0
    assert liq[BTC].fee + liq[ETH].fee == Decimal("171.20") == ex.fees_paid
    assert (liq[BTC].fee, liq[ETH].fee) == (Decimal("105.9399763113"), Decimal("65.2600236887"))


def test_liquidated_at_its_liquidation_price_the_account_loses_its_wallet_and_no_more() -> None:
    """Long 1 BTC @ 60,000 on a 10,000 USDT cross wallet. By hand (first bracket, mmr 0.4 %,
    no deduction): 10,000 + (P - 60,000) = 0.004 P at P = 50,000 / 0.996 = 50,200.80...; the
    equity there, 200.80, is the maintenance margin. Liquidated there, the clearance fee takes
    what the margin still holds (200.80 of the 627.51 the 1.25 % rate would charge) and the
    insurance fund takes nothing: the wallet was never exceeded. (Before: the unpaid 426.71 of
    the fee was reported as a loss beyond the wallet, the insurance fund's.)"""
    ex = open_book({BTC: (Decimal(1), Decimal(60000))}, "10000", MarginMode.CROSS)
    liq = ex.book.liquidation_price(BTC, ex.marks)
    assert liq == Decimal(50000) / Decimal("0.996")
    result = ex.book.liquidate_account({BTC: liq}, {BTC: KNOWN[BTC].liquidation_fee})
    held = Decimal(10000) + liq - Decimal(60000)  # 200.80...: what the wallet holds there
    assert result.wallet_after == result.shortfall == 0
    assert result.fees[BTC] == held
    assert ex.book.wallet == 0


def test_a_candle_through_the_liquidation_price_reports_no_loss_beyond_the_wallet() -> None:
    """The same account, one 1-minute candle from 60,000 down to 50,000 on the mark: liquidated
    where the mark crosses 50,200.80, sold on the tick below (50,200.8); the fee is the 200.80
    left, paid, and nothing is the insurance fund's."""
    ex = open_book({BTC: (Decimal(1), Decimal(60000))}, "10000", MarginMode.CROSS)
    ts = np.array([T0], dtype=np.int64)
    one = np.array([60000.0]), np.array([60000.0]), np.array([50000.0]), np.array([50100.0])
    advance(ex, {BTC: TriggerSeries(ts, *one, 60_000, "mark")}, {}, T0 + 60_000)
    (fill,) = [f for f in ex.fills if f.liquidation]
    assert fill.price == Decimal("50200.8")
    assert (fill.realized_pnl, fill.fee) == (Decimal("-9799.2"), Decimal("200.8"))
    assert ex.book.wallet == 0
    assert ex.insurance_shortfall == 0
    assert not [e for e in ex.events if e.kind == "insurance"]
    assert ex.fees_paid == fill.fee


def test_each_move_alone_does_not_liquidate_the_same_book() -> None:
    for moved in (BTC, ETH):
        ex = open_book(
            {BTC: (Decimal("0.5"), Decimal(60000)), ETH: (Decimal(-5), Decimal(3000))},
            "5000",
            MarginMode.CROSS,
        )
        ts = np.array([T0], dtype=np.int64)
        flat = {BTC: 60000.0, ETH: 3000.0}
        bars = {
            s: TriggerSeries(
                ts,
                np.array([p]),
                np.array([3300.0 if (s == moved == ETH) else p]),
                np.array([52000.0 if (s == moved == BTC) else p]),
                np.array([p]),
                60_000,
                "mark",
            )
            for s, p in flat.items()
        }
        advance(ex, bars, {}, T0 + 60_000)
        assert not [f for f in ex.fills if f.liquidation]


def _stop(ex: SimulatedExchange, sym: str, qty: Decimal, trigger: Decimal) -> None:
    ex.place_order(
        OrderRequest(
            f"sl-{sym}", sym, OrderSide.SELL, OrderType.STOP_MARKET, OrderPurpose.STOP_LOSS,
            qty, True, trigger_price=trigger,
        )
    )  # fmt: skip


def _minutes(*bars: tuple[float, float, float, float]) -> TriggerSeries:
    ts = T0 + 60_000 * np.arange(len(bars), dtype=np.int64)
    o, h, low, c = (np.array(col) for col in zip(*bars, strict=True))
    return TriggerSeries(ts, o, h, low, c, 60_000, "mark")


def _stop_left_below_the_liquidation_price() -> tuple[SimulatedExchange, dict[str, TriggerSeries]]:
    """Cross, 10,000 USDT: long 0.5 BTC @ 60,000 (stop 57,000) and 10 ETH @ 3,000 (stop 2,800).
    ETH's first minute opens at 2,111.6, through its stop, which fills there: -8,884, the wallet
    holds 1,116. BTC's liquidation price rises from (30,000 - 10,000) / 0.498 = 40,160.64 to
    (30,000 - 1,116) / 0.498 = 58,000 (first bracket, mmr 0.4 %), above its stop. The next
    minute BTC trades down to 57,500: through the liquidation price, not the stop."""
    ex = open_book(
        {BTC: (Decimal("0.5"), Decimal(60000)), ETH: (Decimal(10), Decimal(3000))},
        "10000",
        MarginMode.CROSS,
    )
    _stop(ex, BTC, Decimal("0.5"), Decimal(57000))
    _stop(ex, ETH, Decimal(10), Decimal(2800))
    series = {
        BTC: _minutes((60000, 60000, 60000, 60000), (60000, 60000, 57500, 57600)),
        ETH: _minutes((2111.6, 2111.6, 2100, 2105), (2105, 2105, 2105, 2105)),
    }
    return ex, series


def test_a_fill_that_leaves_a_cross_stop_beyond_the_liquidation_price_calls_the_guard() -> None:
    # Paper and live run the engine's guard every minute, whose protection pass places the stop
    # again inside the range (or closes BTC): the replay must run it at the close of the minute
    # the wallet moved, before BTC's next minute.
    ex, series = _stop_left_below_the_liquidation_price()
    hit = advance(ex, series, {}, T0 + 120_000, check_stops=True)
    assert hit == GuardHit(T0 + 60_000, None)
    assert ex.book.wallet == Decimal(1116)
    assert ex.book.liquidation_price(BTC, ex.marks) == Decimal(58000)
    assert ex.book.positions[BTC].qty == Decimal("0.5")  # still held: the guard acts next
    assert [o.trigger_price for o in ex.resting[BTC].values()] == [Decimal(57000)]
    assert ex.processed_ms == T0
    assert ex.marks[BTC] == Decimal(60000)  # the minute's close
    # Without the guard (it placed nothing), the search goes on: BTC is liquidated through its
    # stop the next minute, and the liquidation (which empties the account) calls no guard.
    assert advance(ex, series, {}, T0 + 120_000, check_stops=True) is None
    assert [f.symbol for f in ex.fills if f.liquidation] == [BTC]


def test_the_stop_check_is_the_replays_alone() -> None:
    # The paper feeds advance the account without it: their guard runs every minute anyway.
    ex, series = _stop_left_below_the_liquidation_price()
    assert advance(ex, series, {}, T0 + 120_000) is None
    assert [f.symbol for f in ex.fills if f.liquidation] == [BTC]


def _hours(*bars: tuple[float, float, float, float]) -> TriggerSeries:
    ts = T0 + 3_600_000 * np.arange(len(bars), dtype=np.int64)
    o, h, low, c = (np.array(col) for col in zip(*bars, strict=True))
    return TriggerSeries(ts, o, h, low, c, 3_600_000, "mark")


def _gap(before: float, moved: float) -> TriggerSeries:
    """A flat hour at ``before``, then an hour opening (and staying) at ``moved``."""
    return _hours((before,) * 4, (moved,) * 4)


@pytest.mark.parametrize("first", [BTC, ETH])
def test_a_market_wide_gap_is_measured_on_every_contracts_open(first: str) -> None:
    """Cross, 5,000 USDT: long 0.5 BTC @ 60,000 (stop 57,000), short 5 ETH @ 3,000 (stop 3,150).
    The next hour both open 25 % lower: BTC 45,000, ETH 2,250. By hand, at the two opens: the
    long loses 0.5 x 15,000 = 7,500, the short gains 5 x 750 = 3,750; equity 1,250 against a
    maintenance of 0.4 % x (22,500 + 11,250) = 135: a venue, which measures the one account on
    every contract's mark of that moment, liquidates nothing. BTC's stop fills at its open
    (-7,500: the wallet holds -2,500, the short's 3,750 of gain backs it) and the short is held.
    Measured with ETH still at its close before the gap (3,000), as it was: equity -2,500,
    both legs liquidated and ETH bought back at 3,000, where it did not trade that hour."""
    ex = open_book(
        {BTC: (Decimal("0.5"), Decimal(60000)), ETH: (Decimal(-5), Decimal(3000))},
        "5000",
        MarginMode.CROSS,
    )
    _stop(ex, BTC, Decimal("0.5"), Decimal(57000))
    ex.place_order(
        OrderRequest(
            "sl-eth", ETH, OrderSide.BUY, OrderType.STOP_MARKET, OrderPurpose.STOP_LOSS,
            Decimal(5), True, trigger_price=Decimal(3150),
        )
    )  # fmt: skip
    bars = {BTC: _gap(60000, 45000), ETH: _gap(3000, 2250)}
    series = {first: bars[first]} | bars
    advance(ex, series, {}, T0 + 2 * 3_600_000)
    assert not [f for f in ex.fills if f.liquidation]
    assert ex.insurance_shortfall == 0
    (stop,) = [f for f in ex.fills if f.client_id == f"sl-{BTC}"]
    assert (stop.price, stop.realized_pnl) == (Decimal(45000), Decimal(-7500))
    assert ex.book.positions[BTC].qty == 0
    assert ex.book.positions[ETH].qty == Decimal(-5)
    assert ex.book.wallet == Decimal(-2500)
    assert ex.equity() == Decimal(1250)


@pytest.mark.parametrize("first", [BTC, ETH, SOL])
def test_a_gap_that_takes_the_account_liquidates_every_leg_at_its_open(first: str) -> None:
    """Cross, 10,000 USDT: long 0.5 BTC @ 60,000, 10 ETH @ 3,000 and 100 SOL @ 150. The next
    hour opens 40 % lower for BTC (36,000) and 30 % lower for ETH (2,100) and SOL (105). By
    hand, at the opens: -12,000 - 9,000 - 4,500 = -25,500: equity -15,500, under maintenance;
    the account is liquidated, every leg at its open, the wallet pays 10,000 and the insurance
    fund the 15,500 beyond it (no fee is left to charge). Measured with ETH and SOL still at
    their closes before the gap, as it was, BTC's open alone tipped the account: they were sold
    at 3,000 and 150 and the loss beyond the wallet was 2,000."""
    ex = open_book(
        {
            BTC: (Decimal("0.5"), Decimal(60000)),
            ETH: (Decimal(10), Decimal(3000)),
            SOL: (Decimal(100), Decimal(150)),
        },
        "10000",
        MarginMode.CROSS,
    )
    bars = {BTC: _gap(60000, 36000), ETH: _gap(3000, 2100), SOL: _gap(150, 105)}
    series = {first: bars[first]} | bars
    advance(ex, series, {}, T0 + 2 * 3_600_000)
    liq = {f.symbol: f.price for f in ex.fills if f.liquidation}
    assert liq == {BTC: Decimal(36000), ETH: Decimal(2100), SOL: Decimal(105)}
    assert ex.book.wallet == 0
    assert ex.insurance_shortfall == Decimal(15500)


SYMS = (BTC, ETH, SOL)
PRICES = {BTC: Decimal(60000), ETH: Decimal(3000), SOL: Decimal(150)}


@st.composite
def books(draw: st.DrawFn) -> tuple[dict[str, tuple[Decimal, Decimal]], dict[str, Decimal]]:
    """1-3 positions of up to 60,000 notional each (first bracket), and a joint move."""
    n = draw(st.integers(1, 3))
    book: dict[str, tuple[Decimal, Decimal]] = {}
    moves: dict[str, Decimal] = {}
    for sym in SYMS[:n]:
        inst: Instrument = KNOWN[sym]
        notional = draw(st.integers(200, 60_000))
        qty = inst.floor_qty(Decimal(notional) / PRICES[sym])
        assume(qty >= inst.min_qty and qty * PRICES[sym] >= inst.min_notional)
        sign = draw(st.sampled_from((1, -1)))
        book[sym] = (qty * sign, PRICES[sym])
        moves[sym] = Decimal(draw(st.integers(-60, 60))) / 100
    return book, moves


def equity_after(
    book: dict[str, tuple[Decimal, Decimal]],
    moves: dict[str, Decimal],
    scale: Decimal,
    mode: MarginMode,
    wallet: str,
) -> tuple[Decimal, Decimal, SimulatedExchange]:
    ex = open_book(book, wallet, mode)
    before = ex.equity()
    apply_scenario(ex, Scenario("m", "move", {s: m * scale for s, m in moves.items()}))
    return before, ex.equity(), ex


@settings(max_examples=60)
@given(
    case=books(),
    s1=st.integers(0, 100),
    s2=st.integers(0, 100),
    wallet=st.sampled_from(("2000", "5000", "12000")),
)
def test_cross_equity_is_monotone_in_an_adverse_move_and_never_pays_out(
    case: tuple[dict[str, tuple[Decimal, Decimal]], dict[str, Decimal]],
    s1: int,
    s2: int,
    wallet: str,
) -> None:
    book, moves = case
    pnl_direction = sum((q * p * moves[s] for s, (q, p) in book.items()), Decimal(0))
    assume(pnl_direction < 0)  # a move that loses money
    small, big = sorted((Decimal(s1) / 100, Decimal(s2) / 100))
    total_notional = sum((abs(q) * p for q, p in book.values()), Decimal(0))
    assume(total_notional / 20 <= Decimal(wallet))  # the book can be opened at 20x
    before, eq_small, _ = equity_after(book, moves, small, MarginMode.CROSS, wallet)
    _, eq_big, ex = equity_after(book, moves, big, MarginMode.CROSS, wallet)
    assert eq_big <= eq_small
    assert eq_big <= before
    assert eq_big >= 0
    if any(f.liquidation for f in ex.fills):
        # Liquidated together: nothing left open, nothing paid out beyond the wallet.
        assert all(p.qty == 0 for p in ex.book.positions.values())
        assert ex.book.wallet <= before


@settings(max_examples=40)
@given(case=books(), scale=st.integers(0, 100))
def test_isolated_keeps_per_position_liquidation(
    case: tuple[dict[str, tuple[Decimal, Decimal]], dict[str, Decimal]], scale: int
) -> None:
    book, moves = case
    total_notional = sum((abs(q) * p for q, p in book.values()), Decimal(0))
    wallet = str(int(total_notional / 20) + 1000)
    ex = open_book(book, wallet, MarginMode.ISOLATED)
    margins = {s: p.isolated_margin for s, p in ex.book.positions.items() if p.qty != 0}
    apply_scenario(ex, Scenario("m", "move", {s: m * scale / 100 for s, m in moves.items()}))
    liquidated = {f.symbol: f for f in ex.fills if f.liquidation}
    for sym, (qty, _price) in book.items():
        if sym in liquidated:
            assert ex.book.positions[sym].qty == 0
        else:
            assert ex.book.positions[sym].qty == qty  # the other positions are left alone
    # An isolated liquidation costs that position its margin, no more.
    loss = Decimal(wallet) - ex.book.wallet
    assert loss <= sum((margins[s] for s in liquidated), Decimal(0)) + Decimal("1e-6")
