"""Trade candles held within their mark candle's range (``bounded_by_mark``): the trigger bars of
``trigger_source = "auto"`` when the mark candles are coarser than the trade candles, and the
book's range as what a mark bar's fills pay slippage on."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.enums import OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import OrderRequest
from bot.marketdata.candles import Candles
from bot.sim.history import bounded_by_mark
from bot.sim.slippage import SlippageModel
from bot.sim.triggers import process_bar, settle_funding
from bot.store.types import check_exact
from tests.conftest import long_btc_with_stop, make_exchange

MIN5, HOUR = 300_000, 3_600_000
BTC = "BTC/USDT:USDT"


def candles(
    ts: list[int], ohlc: list[tuple[float, float, float, float]], tf: int, kind: str
) -> Candles:
    a = np.array(ohlc, dtype=np.float64).reshape(-1, 4)
    return Candles(
        ts=np.array(ts, dtype=np.int64),
        open=a[:, 0],
        high=a[:, 1],
        low=a[:, 2],
        close=a[:, 3],
        volume=np.ones(len(ts)),
        tf_ms=tf,
        symbol=BTC,
        kind=kind,
        source=kind,
    )


def test_a_wick_beyond_the_marks_range_is_cut_and_an_hour_without_mark_is_kept() -> None:
    trade = candles(
        [0, MIN5, 2 * MIN5, HOUR],
        [(100, 101, 99, 100), (100, 100.5, 80, 99.5), (99.5, 130, 99, 100), (100, 101, 70, 90)],
        MIN5,
        "trade",
    )
    mark = candles([0], [(100, 100.8, 98, 99.8)], HOUR, "mark")  # no mark bar for the 2nd hour
    b = bounded_by_mark(trade, mark)
    assert b.kind == "mark"
    assert b.ts is trade.ts
    assert list(b.low) == [99, 98, 99, 70]  # the -20 % wick stops at the mark's low
    assert list(b.high) == [100.8, 100.5, 100.8, 101]  # the +30 % one at its high
    assert list(b.open) == [100, 100, 99.5, 100]
    assert not b.low.flags.writeable


@given(
    st.lists(st.tuples(*(st.floats(50, 150) for _ in range(4))), min_size=1, max_size=24),
    st.floats(50, 150),
    st.floats(0, 50),
)
def test_the_bars_stay_bars_inside_the_mark_range(
    rows: list[tuple[float, float, float, float]], mark_low: float, width: float
) -> None:
    bars = [(o, max(o, h, lo, c), min(o, h, lo, c), c) for o, h, lo, c in rows]
    trade = candles([k * MIN5 for k in range(len(bars))], bars, MIN5, "trade")
    mark = candles([0, HOUR], [(mark_low, mark_low + width, mark_low, mark_low)] * 2, HOUR, "mark")
    b = bounded_by_mark(trade, mark)
    assert np.all(b.low <= np.minimum(b.open, b.close))
    assert np.all(b.high >= np.maximum(b.open, b.close))
    assert np.all(b.low >= mark_low)
    assert np.all(b.high <= mark_low + width)
    for hour in (b.ts < HOUR, b.ts >= HOUR):
        if hour.any():  # the mark's extremes are reached within its bar, by the venue's rule
            assert b.low[hour].min() == mark_low
            assert b.high[hour].max() == mark_low + width
    # a level both the trades and the mark reached is reached in the same candle
    for hour in (b.ts < HOUR, b.ts >= HOUR):
        top = mark_low + width
        lows = [
            min(max(lo, mark_low), top) for (_, _, lo, _), h in zip(bars, hour, strict=True) if h
        ]
        for level in lows:
            first = next(i for i, lo in enumerate(lows) if lo <= level)
            assert next(i for i, lo in enumerate(b.low[hour]) if lo <= level) == first


def test_a_level_only_the_mark_reached_is_reached_in_the_candle_nearest_to_it() -> None:
    """The mark fell to 97 in its hour while no trade went below 98 (the index fell harder than
    this venue's book): the venue triggers a stop at 97.5, so the bars must reach 97. The
    candle that came nearest carries the mark's low, the first of equals, and the same for the
    high; the others keep their own range."""
    trade = candles(
        [0, MIN5, 2 * MIN5, 3 * MIN5],
        [(100, 100.5, 99, 99.5), (99.5, 100, 98, 98.5), (98.5, 99, 98, 99), (99, 100.5, 99, 100)],
        MIN5,
        "trade",
    )
    mark = candles([0], [(100, 101, 97, 100)], HOUR, "mark")
    b = bounded_by_mark(trade, mark)
    assert list(b.low) == [99, 97, 98, 99]
    assert list(b.high) == [101, 100, 99, 100.5]
    assert list(b.open) == [100, 99.5, 98.5, 99]


def test_a_stop_only_the_mark_reached_fires_in_the_simulation(
    instruments: dict[str, Instrument],
) -> None:
    """Through the simulated exchange: the long's stop at 59,500 sits below every trade of the
    hour but above the mark's low; the venue triggers it on the mark, and so does the replay.
    It fills at its trigger or better: the book never traded below 59,600."""
    ex = long_btc_with_stop(
        instruments, D("59500"), model=SlippageModel(floor=D(0), range_fraction=D(0), impact=D(0))
    )
    t0 = ex.clock.now_ms()
    trade = candles(
        [t0, t0 + MIN5], [(60000, 60000, 59700, 59800), (59800, 59900, 59600, 59800)], MIN5, "trade"
    )
    mark = candles([t0], [(60000, 60000, 59400, 59800)], HOUR, "mark")
    b = bounded_by_mark(trade, mark)
    for i in range(len(b.ts)):
        bar = [D(repr(float(x[i]))) for x in (b.open, b.high, b.low, b.close)]
        book = tuple(D(repr(float(x[i]))) for x in (trade.open, trade.high, trade.low))
        process_bar(ex, BTC, int(b.ts[i]), *bar, last=book)  # type: ignore[arg-type]
    stop = ex.fills[-1]
    assert stop.purpose is OrderPurpose.STOP_LOSS
    assert stop.price >= D("59500")


def test_a_mark_bars_fills_pay_slippage_on_the_range_the_book_traded(
    instruments: dict[str, Instrument],
) -> None:
    """A stop triggered on a mark bar fills against the last-trade candle beside it; the range
    part of its slippage is that candle's range (the book fell 20 %), not the mark bar's 1 %."""
    ex = long_btc_with_stop(
        instruments,
        D("59500"),
        model=SlippageModel(floor=D(0), range_fraction=D("0.1"), impact=D(0)),
    )
    mark_bar = (D(60000), D(60000), D(59400), D(59600))
    book = (D(60000), D(60000), D(48000))  # open, high, low of the last-trade candle
    process_bar(ex, BTC, ex.clock.now_ms(), *mark_bar, last=book)
    assert ex.candle_range[BTC] == D("0.2")
    assert ex.fills[-1].purpose is OrderPurpose.STOP_LOSS


def test_a_stop_filled_along_the_books_path_is_a_price_the_store_keeps(
    instruments: dict[str, Instrument],
) -> None:
    """The mark crossed the stop a third of the way to its low: the fill is a third of the way
    along the book's path, a quotient of 28 digits that a paper account's state database
    (NUMERIC(38, 18)) refused ("does not fit"): the tick failed. Bounded now: on the price tick
    (0.1), toward the low."""
    ex = long_btc_with_stop(
        instruments, D("59999"), model=SlippageModel(floor=D(0), range_fraction=D(0), impact=D(0))
    )
    mark_bar = (D(60000), D(60000), D(59997), D(59998))  # the stop a third of the way down
    book = (D("60000.1"), D("60000.1"), D("59000.7"))
    process_bar(ex, BTC, ex.clock.now_ms(), *mark_bar, last=book)
    fill = ex.fills[-1]
    assert fill.purpose is OrderPurpose.STOP_LOSS
    check_exact(fill.price)  # raised "does not fit NUMERIC(38, 18)"
    exact = D("60000.1") - (D(1) / D(3)) * (D("60000.1") - D("59000.7"))
    tick = instruments[BTC].tick_size
    assert exact - tick < fill.price <= exact  # a third of the way, rounded down to the tick
    assert fill.price == D("59666.9")


def test_a_funding_payment_on_a_mark_with_eight_decimals_is_stored_exactly(
    instruments: dict[str, Instrument],
) -> None:
    """Mark prices carry up to 8 decimals (the triggers are mark-bounded now): quantity x mark x
    rate had 19 and a paper account's tick failed to store its risk memory."""
    ex, _ = make_exchange(instruments, slippage_bps="0")
    ex.set_mark(BTC, D(60000))
    ex.set_leverage(BTC, 5)
    ex.place_order(
        OrderRequest(
            "e", BTC, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, D("0.123"), False
        )
    )
    wallet = ex.book.wallet
    settle_funding(ex, BTC, ex.clock.now_ms(), D("0.00012345678"), D("60001.12345678"))
    paid = wallet - ex.book.wallet
    exact = D("0.123") * D("60001.12345678") * D("0.00012345678")
    assert exact <= paid < exact + D("1e-10")  # rounded against the holder
    check_exact(paid)
    check_exact(ex.book.wallet)


def test_an_hour_the_trades_skipped_gets_the_marks_own_bar_at_its_end() -> None:
    """No trade candle in the second hour (a hole in the trade data) while the mark went on and
    fell to 90: the bars had nothing there, so a stop at 95 the venue fired on the mark never
    fired. The hour now has one bar, the mark's, in its last slot (it closes when the mark's
    bar does); the trade candles' own bars are unchanged, and a mark hour after the last trade
    candle adds nothing."""
    trade = candles(
        [0, MIN5, 2 * HOUR],
        [(100, 101, 99, 100), (100, 100.5, 99.5, 100), (99, 100, 98, 99.5)],
        MIN5,
        "trade",
    )
    mark = candles(
        [0, HOUR, 2 * HOUR, 3 * HOUR],
        [(100, 101, 99, 100), (100, 100, 90, 99), (99, 100, 98, 99.5), (99, 99, 50, 60)],
        HOUR,
        "mark",
    )
    b = bounded_by_mark(trade, mark)
    assert list(b.ts) == [0, MIN5, 2 * HOUR - MIN5, 2 * HOUR]
    assert list(b.low) == [99, 99.5, 90, 98]
    assert list(b.open) == [100, 100, 100, 99]
    assert list(b.close) == [100, 100, 99, 99.5]
    assert not b.ts.flags.writeable  # (new times: shared by every run on the history)
    assert not b.close.flags.writeable
