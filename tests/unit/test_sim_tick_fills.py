"""Every fill of the simulated exchange is on the contract's tick, rounded against the trader.

A venue's trades are all on the tick. On a contract quoted coarsely for its price (priced near
0.01 with a tick of 0.00001: one tick is 10 bps) a model price between two ticks would flatter
every fill by up to a tick. The property test plays random sequences of market, reduce-only,
stop, take-profit and close-position orders through gapped and moving bars, and compares each
step's first fill with the same step on a twin of the exchange whose tick is 1e-10 (the price
digits the book keeps): the unrounded fill.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from bot.clock import SimClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import Fill, OrderRequest
from bot.errors import OrderRejected
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from bot.sim.slippage import SlippageModel
from bot.sim.triggers import process_bar
from tests.conftest import T0

D = Decimal
TINY = "TINY/USDT:USDT"
FINE = D("1e-10")  # the book's price digits (bot.sim.book.PRICE_PLACES): no rounding at all
MARK_DIGITS = D("1e-8")  # a venue's mark price carries 8 decimals, off the tick


def tiny(tick: str = "0.00001") -> Instrument:
    """A contract like DOGE's (brackets, fees) quoted to ``tick``, with no price band and
    quantity filters that let any size trade."""
    doge = load_instruments("binanceusdm")["DOGE/USDT:USDT"]
    return replace(
        doge,
        symbol=TINY,
        base="TINY",
        tick_size=D(tick),
        step_size=D("0.001"),
        min_qty=D("0.001"),
        min_notional=D(0),
        min_price=None,
        max_price=None,
        max_order_qty=None,
        max_position_notional=None,
    )


def exchange(
    inst: Instrument,
    *,
    mode: MarginMode = MarginMode.ISOLATED,
    model: SlippageModel | None = None,
    balance: str = "10000",
) -> SimulatedExchange:
    return SimulatedExchange(
        {TINY: inst},
        SimClock(T0),
        starting_balance=D(balance),
        margin_mode=mode,
        slippage_model=model or SlippageModel(),
    )


def market(cid: str, side: OrderSide, qty: Decimal, *, reduce: bool = False) -> OrderRequest:
    purpose = OrderPurpose.REDUCE if reduce else OrderPurpose.ENTRY
    return OrderRequest(cid, TINY, side, OrderType.MARKET, purpose, qty, reduce)


def conditional(
    cid: str,
    side: OrderSide,
    trigger: Decimal,
    *,
    take_profit: bool = False,
    qty: Decimal | None = None,
) -> OrderRequest:
    """A reduce-only stop (take-profit) of ``qty``, or a close-position one without a qty."""
    kind = OrderType.TAKE_PROFIT_MARKET if take_profit else OrderType.STOP_MARKET
    purpose = OrderPurpose.TAKE_PROFIT if take_profit else OrderPurpose.STOP_LOSS
    return OrderRequest(
        cid,
        TINY,
        side,
        kind,
        purpose,
        qty,
        qty is not None,
        trigger_price=trigger,
        close_position=qty is None,
    )


def on_tick(price: Decimal, tick: Decimal) -> bool:
    return price % tick == 0


# -- the difference on a coarse tick, by hand ----------------------------------------------------


def test_a_round_trip_on_a_coarse_tick_pays_the_ticks_it_crosses() -> None:
    """Priced at 0.01000 with a tick of 0.00001 (10 bps) and 2 bps of slippage: the model says
    a buy at 0.010002 and a sell at 0.009998, between ticks; the venue fills the buy at the tick
    above, 0.01001, and the sell at the tick below, 0.00999. A round trip of 100,000 costs
    100,000 x 0.00002 = 2.00 before fees, not the 0.40 the model's prices would."""
    ex = exchange(tiny(), model=SlippageModel.fixed(D(2)))
    ex.marks[TINY] = ex.lasts[TINY] = D("0.01000")
    ex.set_leverage(TINY, 5)
    ex.place_order(market("buy", OrderSide.BUY, D(100_000)))
    ex.place_order(market("sell", OrderSide.SELL, D(100_000), reduce=True))
    buy, sell = ex.fills
    assert buy.price == D("0.01001")
    assert sell.price == D("0.00999")
    assert sell.realized_pnl == D(-2)
    # The fee is on the notional at the fill: 100,000 x 0.01001 x 0.0005 = 0.5005.
    assert buy.fee == D("0.5005")
    # The 2 bps and the rest of the way to the tick both count as slippage paid.
    assert ex.slippage_paid == D(100_000) * (D("0.00001") + D("0.00001"))


def test_a_stop_on_a_coarse_tick_fills_on_the_tick_below_the_books_path() -> None:
    """A long at 0.01000 with its stop at 0.00990; the mark falls 0.01000 -> 0.00980 and crosses
    the stop halfway, while the last price falls 0.01000 -> 0.00975: halfway along the book's
    path is 0.009875, between ticks. The stop fills at 0.00987, not 0.009875."""
    ex = exchange(tiny())
    ex.marks[TINY] = ex.lasts[TINY] = D("0.01000")
    ex.set_leverage(TINY, 5)
    ex.place_order(market("e", OrderSide.BUY, D(100_000)))
    ex.place_order(conditional("sl", OrderSide.SELL, D("0.00990"), qty=D(100_000)))
    last = (D("0.01000"), D("0.01000"), D("0.00975"))
    process_bar(ex, TINY, T0, D("0.01"), D("0.01"), D("0.0098"), D("0.0099"), last=last)
    stop = ex.fills[-1]
    assert stop.purpose is OrderPurpose.STOP_LOSS
    assert stop.price == D("0.00987")
    assert stop.realized_pnl == D(100_000) * (D("0.00987") - D("0.01000"))


def test_an_isolated_liquidation_fills_on_the_tick_against_the_position() -> None:
    """A 10x long of 100,000 at 0.01000 on isolated margin 100: its liquidation price (Binance's
    formula, 0.65 % maintenance in DOGE's first bracket) is (1,000 - 100) / (100,000 x 0.9935)
    = 0.0090588..., between ticks. A bar falling through it liquidates the long at the
    tick below, 0.00905: a loss of 95, and the fee is the 5 the margin still holds (less than
    1.25 % of the notional)."""
    inst = tiny()
    ex = exchange(inst)
    ex.marks[TINY] = ex.lasts[TINY] = D("0.01000")
    ex.set_leverage(TINY, 10)
    ex.place_order(market("e", OrderSide.BUY, D(100_000)))
    liq = ex.book.liquidation_price(TINY, ex.marks)
    assert liq is not None
    assert not on_tick(liq, inst.tick_size)
    process_bar(ex, TINY, T0, D("0.0095"), D("0.0095"), D("0.0089"), D("0.009"))
    fill = ex.fills[-1]
    assert fill.liquidation
    assert fill.price == inst.floor_price(liq)
    assert fill.price == D("0.00905")
    assert fill.realized_pnl == D(-95)
    assert fill.fee == D(5)


# -- the rounding itself ------------------------------------------------------------------------

TICKS = [D("0.00001"), D("0.0000001"), D("0.001"), D("0.1"), D("0.25"), D("5")]


@given(
    tick=st.sampled_from(TICKS),
    units=st.integers(min_value=1, max_value=10**12),
    side=st.sampled_from([1, -1]),
    limit_ticks=st.one_of(st.none(), st.integers(min_value=1, max_value=10**9)),
)
def test_a_fill_lands_on_the_tick_against_the_trader_and_never_past_a_limit(
    tick: Decimal, units: int, side: int, limit_ticks: int | None
) -> None:
    inst = tiny(str(tick))
    price = D(units) * D("1e-10") * 1000  # any price to 1e-10, from 1e-7 up
    limit = None if limit_ticks is None else limit_ticks * tick
    fill = inst.fill_on_tick(price, side, limit)
    assert on_tick(fill, tick)
    if limit is not None and (fill > limit if side > 0 else fill < limit):
        pytest.fail(f"fill {fill} beyond the limit {limit}")
    unlimited = inst.fill_on_tick(price, side)
    assert abs(unlimited - price) < tick or (side < 0 and price < tick)
    if side > 0:
        assert unlimited >= price  # a buy never fills below the model's price
        assert fill == min(unlimited, limit) if limit is not None else fill == unlimited
    else:
        # A sell never fills above it, except below one tick: the lowest price there is.
        assert unlimited <= price or unlimited == tick > price
        assert fill == max(unlimited, limit) if limit is not None else fill == unlimited


def test_a_limit_on_the_tick_caps_the_rounding() -> None:
    inst = tiny("0.1")
    assert inst.fill_on_tick(D("100.03"), 1) == D("100.1")
    assert inst.fill_on_tick(D("100.03"), 1, limit=D("100.05")) == D("100.05")
    assert inst.fill_on_tick(D("100.07"), -1, limit=D("100.05")) == D("100.05")
    assert inst.fill_on_tick(D("100.07"), -1) == D("100.0")


def test_a_price_that_is_not_positive_is_an_error_naming_the_contract() -> None:
    with pytest.raises(ValueError, match=r"TINY/USDT:USDT: a fill price must be > 0, got 0"):
        tiny().fill_on_tick(D(0), -1)


# -- every fill of random sequences, against the unrounded twin --------------------------------


def _mark_price(x: Decimal) -> Decimal:
    return x.quantize(MARK_DIGITS, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class MarketStep:
    side: OrderSide
    fraction: Decimal  # of 2,000 USDT of notional
    reduce: bool
    off_tick_last: bool  # paper trading fills against the mark when it has no last price


@dataclass(frozen=True)
class ProtectStep:
    take_profit: bool
    distance: Decimal  # of the trigger from the mark
    close_position: bool


@dataclass(frozen=True)
class BarStep:
    """A bar as moves from the mark: the gap at the open, the close, the extremes beyond them;
    the trade candle beside a mark bar (``wider``: its extremes beyond the mark's), a mark bar
    alone, or a trade bar."""

    gap: Decimal
    close: Decimal
    up: Decimal
    down: Decimal
    source: str  # "mark+last", "mark" or "last"
    wider: Decimal


Step = MarketStep | ProtectStep | BarStep


def market_steps(*, reduce: bool | None = None) -> st.SearchStrategy[MarketStep]:
    return st.builds(
        MarketStep,
        side=st.sampled_from([OrderSide.BUY, OrderSide.SELL]),
        fraction=st.decimals(min_value="0.05", max_value="1", places=2),
        reduce=st.booleans() if reduce is None else st.just(reduce),
        off_tick_last=st.booleans(),
    )


PROTECT = st.builds(
    ProtectStep,
    take_profit=st.booleans(),
    distance=st.decimals(min_value="0.003", max_value="0.1", places=3),
    close_position=st.booleans(),
)
MOVES = st.decimals(min_value="-0.3", max_value="0.3", places=4)
BAR = st.builds(
    BarStep,
    gap=st.one_of(st.just(D(0)), MOVES),
    close=MOVES,
    up=st.decimals(min_value="0", max_value="0.2", places=4),
    down=st.decimals(min_value="0", max_value="0.2", places=4),
    source=st.sampled_from(["mark+last", "mark", "last"]),
    wider=st.decimals(min_value="0", max_value="0.1", places=4),
)


# Bars and protective orders twice as often as market orders: most fills to compare are then
# stops, take-profits and liquidations.
STEPS = st.lists(
    st.one_of(market_steps(), PROTECT, BAR, PROTECT, BAR),
    min_size=1,
    max_size=12,
)
MODELS = st.one_of(
    st.builds(SlippageModel.fixed, st.decimals(min_value="0", max_value="50", places=1)),
    st.builds(
        SlippageModel,
        floor=st.decimals(min_value="0", max_value="0.001", places=5),
        range_fraction=st.decimals(min_value="0", max_value="0.3", places=2),
        impact=st.decimals(min_value="0", max_value="2", places=2),
    ),
)


class Play:
    """Runs the steps on one exchange; each step also on a fresh unrounded twin of it."""

    def __init__(self, ex: SimulatedExchange, tick: Decimal) -> None:
        self.ex = ex
        self.tick = tick
        self.n = 0

    def twin(self) -> SimulatedExchange:
        twin = copy.deepcopy(self.ex)
        twin.book.instruments[TINY] = replace(twin.book.instruments[TINY], tick_size=FINE)
        return twin

    def step(self, step: Step) -> None:
        twin = self.twin()
        before = len(self.ex.fills)
        self.n += 1
        for ex in (self.ex, twin):
            self._apply(ex, step)
        ours, unrounded = self.ex.fills[before:], twin.fills[before:]
        for fill in ours:
            assert on_tick(fill.price, self.tick), f"{fill.client_id} at {fill.price}"
        if ours and unrounded:
            self._compare(ours[0], unrounded[0])

    def _compare(self, fill: Fill, unrounded: Fill) -> None:
        """The same fill, both from the same account: never better, less than a tick away."""
        assert (fill.client_id, fill.side, fill.qty) == (
            unrounded.client_id,
            unrounded.side,
            unrounded.qty,
        )
        if fill.side is OrderSide.BUY:
            assert unrounded.price <= fill.price < unrounded.price + self.tick
        else:
            assert unrounded.price - self.tick < fill.price <= unrounded.price
        kind = "liquidation" if fill.liquidation or fill.purpose is None else fill.purpose.name
        event(f"compared: {kind.lower()} {fill.side}")  # --hypothesis-show-statistics

    def _apply(self, ex: SimulatedExchange, step: Step) -> None:
        if isinstance(step, MarketStep):
            self._market(ex, step)
        elif isinstance(step, ProtectStep):
            self._protect(ex, step)
        else:
            self._bar(ex, step)

    def _market(self, ex: SimulatedExchange, step: MarketStep) -> None:
        mark = ex.marks[TINY]
        inst = ex.book.instruments[TINY]
        ex.lasts[TINY] = mark if step.off_tick_last else self._tick_near(mark)
        qty = inst.floor_qty(D(2000) * step.fraction / mark)
        if qty <= 0:
            return
        # No margin, or nothing to reduce: the venue refuses it, both twins alike.
        with contextlib.suppress(OrderRejected):
            ex.place_order(market(f"m{self.n}", step.side, qty, reduce=step.reduce))

    def _protect(self, ex: SimulatedExchange, step: ProtectStep) -> None:
        pos = ex.book.positions[TINY]
        if pos.qty == 0:
            return
        mark = ex.marks[TINY]
        long = pos.qty > 0
        # A long's stop below the mark and its take-profit above; a short's the other way.
        below = long != step.take_profit
        coarse = self.ex.book.instruments[TINY]  # the same trigger on both twins
        trigger = (
            coarse.floor_price(mark * (1 - step.distance))
            if below
            else coarse.ceil_price(mark * (1 + step.distance))
        )
        side = OrderSide.SELL if long else OrderSide.BUY
        qty = None if step.close_position else abs(pos.qty)
        order = conditional(f"p{self.n}", side, trigger, take_profit=step.take_profit, qty=qty)
        # A second close-position order of the same side and type is refused (-4130).
        with contextlib.suppress(OrderRejected):
            ex.place_order(order)

    def _bar(self, ex: SimulatedExchange, step: BarStep) -> None:
        o = ex.marks[TINY] * (1 + step.gap)
        c = o * (1 + step.close)
        h, low = max(o, c) * (1 + step.up), min(o, c) * (1 - step.down)
        ts = T0 + self.n * 60_000
        if step.source == "last":  # a trade bar: on the tick
            o, h, low, c = (self._tick_near(x) for x in (o, h, low, c))
            process_bar(ex, TINY, ts, o, h, low, c, trades=True)
            return
        o, h, low, c = (_mark_price(x) for x in (o, h, low, c))
        last = None
        if step.source == "mark+last":
            coarse = self.ex.book.instruments[TINY]
            last = (
                self._tick_near(o),
                coarse.ceil_price(h * (1 + step.wider)),
                max(coarse.floor_price(low * (1 - step.wider)), self.tick),
            )
        process_bar(ex, TINY, ts, o, h, low, c, last=last)

    def _tick_near(self, price: Decimal) -> Decimal:
        """A trade price: ``price`` on the tick (never below one tick)."""
        return max((price / self.tick).to_integral_value() * self.tick, self.tick)


@settings(max_examples=200)
@given(
    tick=st.sampled_from([D("0.00001"), D("0.001"), D("0.1"), D("5")]),
    ticks_in_price=st.integers(min_value=100, max_value=20_000),
    mode=st.sampled_from([MarginMode.ISOLATED, MarginMode.CROSS]),
    leverage=st.integers(min_value=1, max_value=20),
    model=MODELS,
    candle=st.tuples(
        st.decimals(min_value="0", max_value="0.3", places=3),
        st.decimals(min_value="1", max_value="1000000", places=0),
    ),
    opening=market_steps(reduce=False),
    steps=STEPS,
)
def test_every_fill_is_on_the_tick_and_never_better_than_unrounded(
    tick: Decimal,
    ticks_in_price: int,
    mode: MarginMode,
    leverage: int,
    model: SlippageModel,
    candle: tuple[Decimal, Decimal],
    opening: MarketStep,
    steps: list[Step],
) -> None:
    """One tick is 0.5 to 100 bps of the price. Market orders (reduce-only or not, against a
    last price on the tick or an off-tick mark), reduce-only and close-position stops and
    take-profits, and bars that gap or move through them and through the liquidation price
    (mark bars with 8 decimals beside trade candles on the tick, mark bars alone, trade bars):
    every fill is on the tick, and the first of each step is no better for the trader than the
    same step on the unrounded twin, and less than a tick from it."""
    ex = exchange(tiny(str(tick)), mode=mode, model=model)
    ex.candle_range[TINY], ex.candle_volume[TINY] = candle
    ex.marks[TINY] = ex.lasts[TINY] = tick * ticks_in_price
    ex.set_leverage(TINY, min(leverage, int(ex.book.instruments[TINY].max_leverage)))
    play = Play(ex, tick)
    play.step(opening)
    for step in steps:
        play.step(step)
