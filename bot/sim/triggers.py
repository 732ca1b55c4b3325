"""Trigger evaluation for the simulated exchange: one bar at a time, and vectorised over history.

Between two decision ticks the replay calls :func:`advance` with the mark-price (trigger) bars of
every contract. It finds, with numpy and without touching the policy, the first bar where any
resting conditional order or the liquidation price could fire, or the next funding settlement,
handles that one event in Python (:func:`process_bar`), and searches again from there. Bars with
no event cost a few vectorised comparisons, so a year of 1-minute bars is not a year of Python
loops. The fill rules are in :mod:`bot.sim.exchange`'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np
import numpy.typing as npt

from bot.domain.enums import MarginMode, OrderSide, OrderStatus, OrderType
from bot.domain.instrument import MarginModel
from bot.domain.margin import cross_maintenance
from bot.domain.orders import Fill, Order
from bot.errors import OrderRejected
from bot.risk.guard import first_breach
from bot.sim.account_state import SimAccount
from bot.sim.account_watch import (
    AccountPath,
    account_path,
    cannot_reach,
    first_cross_liquidation,
    joint_fraction,
)
from bot.sim.book import charged
from bot.sim.cursor import TimeCursor
from bot.sim.events import SimEvent, SimEventKind
from bot.sim.slippage import PLACES as FRACTION_PLACES
from bot.sim.slippage import fill_price

# Bound once: a member looked up on its enum class costs a slow attribute access (3.11).
_BYBIT_UTA = MarginModel.BYBIT_UTA

ZERO = Decimal(0)
_NO_DOWN = -math.inf  # no level below the price (trigger_bounds)
_NO_UP = math.inf
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def to_decimal(x: float) -> Decimal:
    """Exact decimal of a price read from a CSV (shortest repr round-trips the text)."""
    return Decimal(repr(float(x)))


class DecimalColumn:
    """The exact decimals (:func:`to_decimal`) of one float column, remembering the last one
    converted: the replay reads the same closing price as a mark and as the last price."""

    __slots__ = ("_at", "_value", "values")

    def __init__(self, values: FloatArray) -> None:
        self.values = values
        self._at: int | None = None
        self._value = ZERO

    def __getitem__(self, i: int) -> Decimal:
        if i != self._at:
            self._value = to_decimal(self.values[i])
            self._at = i
        return self._value


@dataclass(slots=True)
class TriggerSeries:
    """The bars triggers are evaluated on for one contract (mark price where the data has it).

    The arrays must not change once the series is in use (the loaders' are read-only): the
    lookups below remember answers about them."""

    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    tf_ms: int
    source: str  # "mark" or "last", for the report
    cursor: int = 0
    # The closes as exact decimals, shared with the market's last price when the trigger bars
    # are the last-trade candles (None: converted here).
    closes: DecimalColumn | None = field(default=None, repr=False, compare=False)
    # Mark bars only: the last-trade candle of the same time (open, high, low; NaN where there
    # is none), what a triggered stop-market order fills against (see process_bar).
    last_bars: FloatArray | None = field(default=None, repr=False, compare=False)
    # Lookups (see the methods): remembered answers, not part of the series.
    _closed: TimeCursor | None = field(default=None, init=False, repr=False, compare=False)
    _opened: TimeCursor | None = field(default=None, init=False, repr=False, compare=False)
    # Lowest low and highest high of planned windows: {first bar: (end bar, low, high)}, and
    # the (low, high) arrays they were computed on.
    _windows: dict[int, tuple[int, float, float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _windows_of: tuple[FloatArray, FloatArray] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _last_window: tuple[FloatArray, FloatArray, int, int, float, float] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def close_at(self, i: int) -> Decimal:
        """The close of bar ``i`` (``i >= 0``) as an exact decimal."""
        closes = self.closes
        if closes is None or closes.values is not self.close:
            closes = self.closes = DecimalColumn(self.close)
        return closes[i]

    def closed_by(self, end_ms: int) -> int:
        """How many bars have closed at or before ``end_ms`` (the index of the first that has
        not)."""
        cursor = self._closed
        if cursor is None or cursor.ts is not self.ts:
            cursor = self._closed = TimeCursor(self.ts, self.tf_ms)
        return cursor.right(end_ms - self.tf_ms)

    def opened_before(self, ms: int) -> int:
        """How many bars open before ``ms`` (``searchsorted(ts, ms, side="left")``)."""
        cursor = self._opened
        if cursor is None or cursor.ts is not self.ts:
            cursor = self._opened = TimeCursor(self.ts, self.tf_ms)
        return cursor.right(ms - 1)  # times are whole ms: < ms is <= ms - 1

    def extremes(self, i0: int, i1: int) -> tuple[float, float]:
        """The lowest low and the highest high of bars ``[i0, i1)`` (``i0 < i1``): a planned
        window (:meth:`plan_windows`), the last window asked, or computed now."""
        low, high = self.low, self.high
        planned = self._windows.get(i0)
        if planned is not None and planned[0] == i1:
            of = self._windows_of
            if of is not None and of[0] is low and of[1] is high:
                return planned[1], planned[2]
        last = self._last_window
        if (
            last is not None
            and last[2] == i0
            and last[3] == i1
            and last[0] is low
            and last[1] is high
        ):
            return last[4], last[5]
        lo, hi = float(low[i0:i1].min()), float(high[i0:i1].max())
        self._last_window = (low, high, i0, i1, lo, hi)
        return lo, hi

    def plan_windows(self, bounds: IntArray) -> None:
        """Compute at once (vectorised) the extremes of the consecutive windows
        ``[bounds[k], bounds[k + 1])`` the replay will search, one per decision tick."""
        b = np.asarray(bounds, dtype=np.int64)
        self._windows = {}
        self._windows_of = (self.low, self.high)
        if len(b) < 2:
            return
        if np.any(np.diff(b) < 0) or b[0] < 0 or b[-1] > len(self.ts):
            raise ValueError(
                f"TriggerSeries.plan_windows: bounds must be non-decreasing indices within the "
                f"{len(self.ts)} bars, got {b[0]} .. {b[-1]}"
            )
        first, end = b[:-1], b[1:]
        keep = end > first
        first, end = first[keep], end[keep]
        if len(first) == 0:
            return
        # The kept windows are consecutive: each ends where the next begins, the last at b[-1].
        stop = int(b[-1])
        lows = np.minimum.reduceat(self.low[:stop], first)
        highs = np.maximum.reduceat(self.high[:stop], first)
        self._windows = dict(
            zip(
                first.tolist(),
                zip(end.tolist(), lows.tolist(), highs.tolist(), strict=True),
                strict=True,
            )
        )


@dataclass(slots=True)
class FundingTape:
    """Settlement times and rates for one contract, consumed in order."""

    ts: IntArray
    rate: FloatArray
    cursor: int = 0
    interval_hours: list[Decimal] = field(default_factory=list)


def _falls(order: Order) -> bool:
    """Whether a conditional order fires on a falling price: a sell stop or a buy take-profit
    (a buy stop and a sell take-profit fire on a rising one)."""
    return (order.type is OrderType.STOP_MARKET) == (order.side is OrderSide.SELL)


def _fires(order: Order, o: Decimal, h: Decimal, low: Decimal) -> tuple[bool, bool]:
    """(fires within the bar, already beyond the trigger at the open)."""
    trig = order.trigger_price
    assert trig is not None  # noqa: S101 - conditional orders always carry one
    if _falls(order):
        return low <= trig, o <= trig
    return h >= trig, o >= trig


def _last_bar(s: TriggerSeries, idx: int) -> tuple[Decimal, Decimal, Decimal] | None:
    """The last-trade candle (open, high, low) beside mark bar ``idx``, if the data has one."""
    bars = s.last_bars
    if bars is None:
        return None
    o, h, low = bars[idx]
    if o != o:  # NaN: no last-trade candle at this time
        return None
    return to_decimal(o), to_decimal(h), to_decimal(low)


def fill_reference(
    order: Order,
    price: Decimal,
    gapped: bool,
    mark_bar: tuple[Decimal, Decimal, Decimal],
    last: tuple[Decimal, Decimal, Decimal] | None,
) -> Decimal:
    """What a stop-market or take-profit-market order triggered on the mark at ``price`` fills
    against: the order book, i.e. the last price. Within the bar the two are taken on straight
    paths from their opens toward the trigger's side (a stop's falling sell, a take-profit's
    rising one...), the last price as far along its path as the mark along its own when it
    crossed the trigger (across a gap: the last price's open); the worse of that and the
    trigger for the trader. A crash candle whose last price fell further than its mark fills
    the stop further down; a take-profit the mark reached while the last price stayed short of
    it fills where the last price was, never at a level no trade reached (it filled at its
    trigger, above every trade of the bar). Without a last-trade candle (or on last-price
    bars), the trigger."""
    if last is None:
        return price
    o, h, low = mark_bar
    lo_, lh, ll = last
    sells = order.side is OrderSide.SELL
    falls = _falls(order)
    # the fraction of its path the mark had run, rounded toward the side that costs the trader
    costly = ROUND_CEILING if order.type is OrderType.STOP_MARKET else ROUND_FLOOR
    if gapped:
        ref = lo_
    elif falls:
        span = o - low
        ref = lo_ - _along((o - price) / span, costly) * (lo_ - ll) if span > 0 else ll
    else:
        span = h - o
        ref = lo_ + _along((price - o) / span, costly) * (lh - lo_) if span > 0 else lh
    if sells:
        return ref if ref < price else price
    return ref if ref > price else price


def _along(fraction: Decimal, rounding: str) -> Decimal:
    """How far along its path the mark was, to bounded digits, rounded as ``rounding`` says
    (toward the side that costs the trader): a quotient has 28 digits, and the price built from
    it must be stored exactly (NUMERIC(38, 18) in the state database of a paper account)."""
    return fraction.quantize(FRACTION_PLACES, rounding=rounding)


def process_bar(
    ex: SimAccount,
    symbol: str,
    ts: int,
    o: Decimal,
    h: Decimal,
    low: Decimal,
    c: Decimal,
    *,
    last: tuple[Decimal, Decimal, Decimal] | None = None,
    trades: bool = False,
    others: Mapping[str, Decimal] | None = None,
) -> None:
    """Run every trigger and the liquidation check of ``symbol`` on one bar, in rule order.
    ``last``: the last-trade candle (open, high, low) of the same time when the bar is a mark
    bar (stop-market orders fill against it, see :func:`fill_reference`); ``trades``: the bar
    is a last-trade candle of the data. Fills stay within the range the last price traded at
    (the last-trade candle, else the bar itself when it is one); a bar made up for one price
    (a stress move, a mark set by hand) bounds nothing: its fills pay their whole slippage.
    ``others`` (cross margin): the marks other contracts have at ``ts`` where they differ from
    ``ex.marks`` (the opens of their bars opening at ``ts`` too, see :func:`_marks_at`): the
    account's margin, the liquidation price and a liquidation's prices are measured on them,
    as the venue measures the one account on every contract's mark at that moment."""
    book = ex.book
    traded = (last[2], last[1]) if last is not None else (low, h) if trades else None
    fired: set[str] = set()
    prev = ex.marks.get(symbol, o)  # the price before the bar: a gap crosses levels from here
    if _bar_start(ex, symbol, ts, (o, h, low, c), last, others):
        return
    ex.marks.setdefault(symbol, o)
    while True:
        best: tuple[tuple[int, int, Decimal], Order | None, bool] | None = None
        for order in ex.resting[symbol].values():
            if order.client_id in fired:
                continue
            fires, gapped = _fires(order, o, h, low)
            if not fires:
                continue
            trig = order.trigger_price or o
            key = (
                0 if gapped else 1,
                1 if order.type is OrderType.TAKE_PROFIT_MARKET else 0,
                # Within the bar the price starts at the open; across a gap it came from
                # ``prev``: the level it crossed first is the one nearer to where it came from.
                abs(prev - trig) if gapped else abs(o - trig),
            )
            if best is None or key < best[0]:
                best = (key, order, gapped)
        pos = book.positions[symbol]
        if pos.qty != 0:
            liq = book.liquidation_price(symbol, {**ex.marks, **others} if others else ex.marks)
            if liq is not None and ((pos.qty > 0 and low <= liq) or (pos.qty < 0 and h >= liq)):
                gapped = (pos.qty > 0 and o <= liq) or (pos.qty < 0 and o >= liq)
                # A bar that opens beyond the liquidation price: the position cannot exist at
                # that price, whatever stop rests beyond it; the liquidation engine takes it.
                key = (0, -1, ZERO) if gapped else (1, 0, abs(o - liq))
                if best is None or key <= best[0]:
                    _liquidate(ex, symbol, ts, o if gapped else liq, traded, others)
                    continue
        if best is None:
            break
        _, first, gapped = best
        if first is None:
            break
        fired.add(first.client_id)
        price = o if gapped else (first.trigger_price or o)
        reference = fill_reference(first, price, gapped, (o, h, low), last)
        _trigger(ex, first, ts, reference, traded)
    ex.marks[symbol] = c


def _bar_start(
    ex: SimAccount,
    symbol: str,
    ts: int,
    bar: tuple[Decimal, Decimal, Decimal, Decimal],
    last: tuple[Decimal, Decimal, Decimal] | None,
    others: Mapping[str, Decimal] | None = None,
) -> bool:
    """Note the range the book traded in over the bar (its last-trade candle when the bar is
    a mark bar: slippage is the book's, and a mark bar's range is narrower than its wicks)
    for the slippage of fills inside it and of the next decision's orders; True if the bar's
    open liquidated the cross account (nothing else happens on it then)."""
    o, h, low, c = bar
    r_open, r_high, r_low = last if last is not None else (o, h, low)
    if ex.slippage_model.data_driven and r_open > 0:
        ex.candle_range[symbol] = (r_high - r_low) / r_open
    return _cross_gap(ex, symbol, ts, o, c, others)


def _cross_gap(
    ex: SimAccount,
    symbol: str,
    ts: int,
    o: Decimal,
    c: Decimal,
    others: Mapping[str, Decimal] | None = None,
) -> bool:
    """A bar opening at ``o`` that leaves the whole cross account below its maintenance margin:
    the liquidation engine takes every position at the marks of this moment (``others``: the
    other contracts' marks at ``ts`` where they moved too, see :func:`process_bar`)."""
    book = ex.book
    if book.margin_mode is not MarginMode.CROSS or all(p.qty == 0 for p in book.positions.values()):
        return False
    marks = {**ex.marks, **others, symbol: o} if others else {**ex.marks, symbol: o}
    if not _account_under_maintenance(ex, marks):
        return False
    liquidate_account(ex, ts, marks)
    ex.marks[symbol] = c
    return True


def _account_under_maintenance(ex: SimAccount, marks: dict[str, Decimal]) -> bool:
    """Whether the account's equity at ``marks`` is at or under its maintenance margin (a
    position without a mark: not known, no)."""
    book = ex.book
    if any(p.qty != 0 and s not in marks for s, p in book.positions.items()):
        return False
    equity = book.equity(marks)
    mm = sum(
        (
            cross_maintenance(book.instruments[s], p.qty, p.entry_price, marks[s])
            for s, p in book.positions.items()
            if p.qty != 0
        ),
        ZERO,
    )
    return equity <= mm


def _trigger(
    ex: SimAccount,
    order: Order,
    ts: int,
    price: Decimal,
    traded: tuple[Decimal, Decimal] | None = None,
) -> None:
    del ex.resting[order.symbol][order.client_id]
    kind = (
        SimEventKind.STOP_LOSS if order.type is OrderType.STOP_MARKET else SimEventKind.TAKE_PROFIT
    )
    ex.marks[order.symbol] = price
    try:
        filled = ex._fill_market(order, price, ts, inside=True, traded=traded)
    except OrderRejected as exc:
        # Reduce-only with nothing to reduce, or no margin: the order expires, as on Binance.
        ex.orders[order.client_id] = replace(order, status=OrderStatus.CANCELED)
        ex.events.append(
            SimEvent(
                ts_ms=ts,
                kind=SimEventKind.EXPIRED,
                symbol=order.symbol,
                detail=f"{order.client_id}: {exc}",
            )
        )
        return
    ex.orders[order.client_id] = filled
    fill = ex.fills[-1]
    ex.events.append(
        SimEvent(
            ts_ms=ts,
            kind=kind,
            symbol=order.symbol,
            detail=f"{order.client_id} {fill.qty} @ {fill.price}",
            amount=fill.realized_pnl,
        )
    )


def _liquidate(
    ex: SimAccount,
    symbol: str,
    ts: int,
    price: Decimal,
    traded: tuple[Decimal, Decimal] | None = None,
    others: Mapping[str, Decimal] | None = None,
) -> None:
    book = ex.book
    ex.marks[symbol] = price
    if book.margin_mode is MarginMode.CROSS:
        # A cross liquidation takes the whole account, at the marks of that moment.
        liquidate_account(ex, ts, {**ex.marks, **others} if others else dict(ex.marks))
        return
    pos = book.positions[symbol]
    qty = pos.qty
    price = _liquidation_fill(ex, symbol, qty, price, traded)
    inst = book.instruments[symbol]
    result = book.liquidate(
        symbol, price, inst.liquidation_fee, takes_all=inst.margin_model is _BYBIT_UTA
    )
    ex.fees_paid += result.fee
    _record_liquidation(ex, symbol, ts, qty, price, result.fee, result.realized_pnl)
    # Filled past the bankruptcy price (a gap beyond the liquidation price): the margin is
    # gone and the insurance fund takes the rest, as in a cross account's liquidation.
    insurance_takes(
        ex,
        ts,
        symbol,
        result.shortfall,
        f"{symbol} isolated position liquidated at {price} beyond the bankruptcy price",
        "its margin",
    )


def liquidate_account(ex: SimAccount, ts: int, prices: Mapping[str, Decimal]) -> None:
    """Close every position of a cross account together at ``prices`` (see
    :meth:`bot.sim.book.Book.liquidate_account`); the loss beyond the wallet is recorded."""
    book = ex.book
    held = {s: p.qty for s, p in book.positions.items() if p.qty != 0}
    if not held:
        return
    fill_prices = {s: _liquidation_fill(ex, s, q, prices[s]) for s, q in held.items()}
    rates = {s: book.instruments[s].liquidation_fee for s in held}
    takes_all = any(book.instruments[s].margin_model is _BYBIT_UTA for s in held)
    result = book.liquidate_account(fill_prices, rates, takes_all=takes_all)
    # The fees are what the wallet could pay (capped there), so every one of them is paid.
    ex.fees_paid += sum(result.fees.values(), ZERO)
    for sym, qty in held.items():
        ex.marks[sym] = fill_prices[sym]
        _record_liquidation(
            ex, sym, ts, qty, fill_prices[sym], result.fees[sym], result.realized[sym]
        )
    insurance_takes(
        ex, ts, next(iter(held)), result.shortfall, "cross account liquidated", "the wallet"
    )


def insurance_takes(
    ex: SimAccount, ts: int, symbol: str, shortfall: Decimal, what: str, backing: str
) -> None:
    """A loss beyond what backed it (``backing``: an isolated margin, the wallet) is the
    insurance fund's: counted in ``insurance_shortfall`` and recorded as an ``insurance``
    event after ``what`` happened (nothing when there is none)."""
    if shortfall <= 0:
        return
    ex.insurance_shortfall += shortfall
    ex.events.append(
        SimEvent(
            ts_ms=ts,
            kind=SimEventKind.INSURANCE,
            symbol=symbol,
            detail=f"{what}: loss beyond {backing} {shortfall:.2f} taken by the insurance fund",
            amount=shortfall,
        )
    )


def _liquidation_fill(
    ex: SimAccount,
    symbol: str,
    qty: Decimal,
    price: Decimal,
    traded: tuple[Decimal, Decimal] | None = None,
) -> Decimal:
    """The liquidation engine's fill: ``price`` (the mark where it crossed the liquidation
    price, or the open of a bar that gapped past it) moved against the position by the slippage
    of an order inside the candle, within ``traded`` (see :func:`within_traded`), then onto the
    tick against the position (:meth:`~bot.domain.instrument.Instrument.fill_on_tick`). Binance
    sends liquidation orders as IOC orders limited at the bankruptcy price, which fill in the
    book, on the tick, and keeps what the margin still holds as its clearance fee
    (https://www.binance.com/en/support/faq/360033525271); Bybit takes the position over at
    its bankruptcy price, the margin left going to its insurance fund
    (https://www.bybit.com/en/help-center/article/Liquidation-Process-USDT-Contract). Binance's
    clearance fee (1.25 %) takes what the margin holds at the liquidation price on most tiers;
    Bybit takes all of it: the liquidation fee here, capped at what the margin still holds on
    Binance, all of it on Bybit (:meth:`bot.sim.book.Book.liquidate`, ``takes_all``)."""
    slip, impact = ex.slippage_parts(symbol, abs(qty), inside=True)
    sign = -1 if qty > 0 else 1  # the liquidation sells a long, buys a short back
    moved = fill_price(price, sign, slip, impact, traded) if slip else price
    fill = ex.book.instruments[symbol].fill_on_tick(moved, sign)
    ex.pay_slippage(symbol, abs(qty) * abs(fill - price))
    return fill


def _record_liquidation(
    ex: SimAccount,
    sym: str,
    ts: int,
    qty: Decimal,
    price: Decimal,
    fee: Decimal,
    realized: Decimal,
) -> None:
    ex.cancel_close_position_orders(sym)
    ex.events.append(
        SimEvent(
            ts_ms=ts,
            kind=SimEventKind.LIQUIDATION,
            symbol=sym,
            detail=f"{qty} @ {price}",
            amount=realized,
        )
    )
    ex.fills.append(
        Fill(
            client_id=f"liquidation-{sym}-{ts}",
            symbol=sym,
            side=OrderSide.SELL if qty > 0 else OrderSide.BUY,
            qty=abs(qty),
            price=price,
            fee=fee,
            timestamp_ms=ts,
            purpose=None,
            realized_pnl=realized,
            liquidation=True,
        )
    )


def settle_funding(ex: SimAccount, symbol: str, ts: int, rate: Decimal, mark: Decimal) -> None:
    """Charge (or pay) one funding settlement on the position held at ``ts``."""
    pos = ex.book.positions[symbol]
    if pos.qty == 0:
        return
    amount = charged(pos.qty * mark * rate)  # > 0: paid by the holder
    ex.book.pay_funding(symbol, amount)
    ex.funding_paid += amount
    ex.events.append(
        SimEvent(
            ts_ms=ts,
            kind=SimEventKind.FUNDING,
            symbol=symbol,
            detail=f"rate {rate} on {pos.qty} @ {mark}",
            amount=amount,
        )
    )


def trigger_bounds(ex: SimAccount, symbol: str) -> tuple[float, float]:
    """(down, up): a bar with low <= down or high >= up may fire something; +-inf if nothing."""
    down = _NO_DOWN
    up = _NO_UP
    resting = ex.resting[symbol]
    if resting:
        for order in resting.values():
            trig = float(order.trigger_price or 0)
            if _falls(order):
                down = max(down, trig)
            else:
                up = min(up, trig)
    pos = ex.book.positions[symbol]
    if pos.qty != 0:
        liq = ex.book.liquidation_price(symbol, ex.marks)
        if liq is not None:
            if pos.qty > 0:
                down = max(down, float(liq))
            else:
                up = min(up, float(liq))
    return down, up


def _first_hit(s: TriggerSeries, i0: int, i1: int, down: float, up: float) -> int:
    """Index of the first bar in [i0, i1) that crosses down/up, or -1."""
    if i0 >= i1 or (down == _NO_DOWN and up == _NO_UP):
        return -1
    lo, hi = s.extremes(i0, i1)
    if lo > down and hi < up:  # nothing in the window reaches a level (NaN: searched below)
        return -1
    hit = (s.low[i0:i1] <= down) | (s.high[i0:i1] >= up)
    k = int(hit.argmax())
    return i0 + k if hit[k] else -1


@dataclass(frozen=True, slots=True)
class GuardHit:
    """A candle at whose close the engine's guard must run: its close time and the worst equity
    the account had on it (with the positions held after its triggers ran) when that reached
    the guard's floor; None when the guard runs for a stop left beyond the liquidation price
    (nothing lower seen than what the guard reads itself)."""

    ts_ms: int
    equity: Decimal | None


def advance(
    ex: SimAccount,
    series: Mapping[str, TriggerSeries],
    funding: Mapping[str, FundingTape],
    end_ms: int,
    floor: Decimal | None = None,
    *,
    check_stops: bool = False,
    settle_until: int | None = None,
) -> GuardHit | None:
    """Process every bar that closes at or before ``end_ms`` and every settlement up to it
    (``settle_until``: up to that time instead; the replay's last interval, which settles
    strictly before the run's end: a settlement at the end belongs to the next window).

    ``floor``: the guard's equity floor (:func:`bot.risk.guard.equity_floor`). If a bar's worst
    equity reaches it, processing stops after that bar and the hit is returned, so the caller can
    run the engine's guard at the bar's close; call again to continue. In cross margin the
    account-level liquidation is searched on the same joint worst path (see
    :mod:`bot.sim.account_watch`).

    ``check_stops`` (cross margin): after a fill or a settlement that moved the wallet, and so
    every remaining position's liquidation price, a resting stop no longer strictly between
    its mark and the liquidation price at the close of that candle stops processing there too
    (a hit without equity): paper and live run the guard every minute, whose protection pass
    places such a stop again inside the range or closes the position; left resting, the
    position would be liquidated through it. Only wallet changes are checked (a fill, a
    settlement: rare), never every candle.
    """
    ends, scan_from = _ends(series, end_ms)
    settled_by = end_ms if settle_until is None else min(settle_until, end_ms)
    cross = ex.book.margin_mode is MarginMode.CROSS
    # One cross account over several contracts: a bar is measured with the others' marks of its
    # open (_marks_at); isolated margin, or one contract, has nothing to look up.
    several = cross and len(series) > 1
    floor_f = float(floor) if floor is not None else None
    check_stops = check_stops and cross
    # (open, close) of the candle on which the wallet moved: its stops are checked at its close,
    # once every event of the candle (another contract's, the joint path's) has run.
    moved: tuple[int, int] | None = None
    while True:
        best_ts, best = _next_event(ex, series, funding, ends, settled_by)
        path = (
            account_path(ex, series, ends, scan_from)
            if (cross or floor_f is not None)
            and not cannot_reach(ex, series, ends, scan_from, floor_f, cross)
            else None
        )
        joint = _joint_event(path, cross, floor_f, best_ts) if path is not None else None
        if moved is not None and _candle_done(moved[1], path, joint, best_ts):
            hit = _stops_hit(ex, series, funding, moved, settled_by)
            moved = None
            if hit is not None:
                return hit
        if joint is not None and path is not None:
            kind, k = joint
            t = int(path.ts[k])
            _catch_up(ex, series, t)
            if kind == "account":
                _liquidate_joint(ex, series, path, k)
                scan_from = t + 1
                continue
            _through(ex, series, t)
            close = t + path.tf_ms
            # The guard acts at the candle's close. A settlement up to that instant comes first:
            # funding is exchanged on the position held at the funding time (Binance "Introduction
            # to Binance Futures Funding Rates"), before anything the bot does on that close, as
            # a regular tick has it (the replay advances to the tick, then the engine runs).
            _settle_through(ex, series, funding, min(close, settled_by))
            return GuardHit(close, to_decimal(float(path.worst_equity[k])))
        if best is None or best_ts is None:
            break
        _catch_up(ex, series, best_ts)
        scan_from = best_ts
        kind, sym, idx = best
        wallet = ex.book.wallet
        if kind == "funding":
            _settle(ex, series[sym], funding[sym], sym, best_ts)
        else:
            s = series[sym]
            process_bar(
                ex,
                sym,
                best_ts,
                to_decimal(s.open[idx]),
                to_decimal(s.high[idx]),
                to_decimal(s.low[idx]),
                to_decimal(s.close[idx]),
                last=_last_bar(s, idx),
                trades=s.source != "mark",
                others=_marks_at(ex, series, sym, best_ts) if several else None,
            )
            s.cursor = idx + 1
            if floor is not None and _flat_below(ex, floor):
                # The fill left the account flat under the guard's floor: no joint path is left
                # to search, the guard runs at this bar's close.
                _through(ex, series, best_ts)
                return GuardHit(best_ts + s.tf_ms, ex.book.wallet)
        close = best_ts + series[sym].tf_ms
        # (a settlement whose candle closes after ``end_ms``: the caller's tick comes first)
        if check_stops and moved is None and ex.book.wallet != wallet and close <= end_ms:
            moved = (best_ts, close)
    for sym, s in series.items():
        if ends[sym] > s.cursor:
            ex.marks[sym] = s.close_at(ends[sym] - 1)
        s.cursor = max(s.cursor, ends[sym])
    ex.processed_ms = max(ex.processed_ms, end_ms)
    return None


def _marks_at(
    ex: SimAccount, series: Mapping[str, TriggerSeries], symbol: str, ts: int
) -> dict[str, Decimal] | None:
    """The marks at ``ts`` of the other contracts held whose (mark) bar opens at ``ts`` too:
    that bar's open, where ``ex.marks`` still holds the close before it (bars are processed one
    contract at a time, and a contract's bar is searched only for its own triggers). A venue
    measures a cross account on every contract's mark of the moment: a market-wide gap moves
    them all at that open, and a hedged book's other leg gains what the gapped one loses.
    ``ex.marks`` is left alone: each contract's close before the gap is still where its own
    bar's gap crossed its levels from. None when no other contract's bar opens at ``ts``.
    Called after :func:`_catch_up` to ``ts``: a bar opening at ``ts`` is at the cursor, or just
    behind it once its own event ran."""
    at: dict[str, Decimal] | None = None
    for sym, pos in ex.book.positions.items():
        if sym == symbol or pos.qty == 0:
            continue
        s = series.get(sym)
        if s is None:
            continue
        j = s.cursor
        if not (j < len(s.ts) and s.ts[j] == ts):
            j -= 1
            if j < 0 or s.ts[j] != ts:
                continue
        if at is None:
            at = {}
        at[sym] = to_decimal(s.open[j])
    return at


def _settle(ex: SimAccount, s: TriggerSeries, tape: FundingTape, symbol: str, ts: int) -> None:
    """Settle ``symbol``'s next settlement (at ``ts``) on the mark of that instant: the open of
    the bar it lies in (the bar opening then, or one opening before it: a settlement off the
    bars' opens, on a bar longer than the settlement's minute), else, in a hole of the bars,
    the mark the account holds. Never a bar's close: :func:`_catch_up` has moved the account
    past the bar a settlement lies in (it had no event before it), and its close, the mark up
    to a bar later, is a price the settlement never saw."""
    idx = tape.cursor
    tape.cursor += 1
    j = int(s.ts.searchsorted(ts, side="right")) - 1
    inside = j >= 0 and ts < int(s.ts[j]) + s.tf_ms
    mark = to_decimal(s.open[j]) if inside else ex.marks.get(symbol, ZERO)
    if mark > 0:
        settle_funding(ex, symbol, ts, to_decimal(tape.rate[idx]), mark)


def _settle_through(
    ex: SimAccount,
    series: Mapping[str, TriggerSeries],
    funding: Mapping[str, FundingTape],
    until_ms: int,
) -> None:
    """Settle every pending settlement at or before ``until_ms``, in time order (of equal
    times, in the contracts' order, as :func:`_next_event` takes them)."""
    while True:
        due: tuple[int, str] | None = None
        for sym in series:
            tape = funding.get(sym)
            if tape is None or tape.cursor >= len(tape.ts):
                continue
            t = int(tape.ts[tape.cursor])
            if t <= until_ms and (due is None or t < due[0]):
                due = (t, sym)
        if due is None:
            return
        _settle(ex, series[due[1]], funding[due[1]], due[1], due[0])


def _ends(series: Mapping[str, TriggerSeries], end_ms: int) -> tuple[dict[str, int], int]:
    """Per contract the index of its first bar not closed by ``end_ms``, and the time from which
    bars are still to be searched (the earliest unprocessed bar; ``end_ms`` if none)."""
    ends: dict[str, int] = {}
    first_open: int | None = None
    for sym, s in series.items():
        ends[sym] = s.closed_by(end_ms)
        if s.cursor < len(s.ts):
            t = int(s.ts[s.cursor])
            if first_open is None or t < first_open:
                first_open = t
    return ends, end_ms if first_open is None else first_open


def _next_event(
    ex: SimAccount,
    series: Mapping[str, TriggerSeries],
    funding: Mapping[str, FundingTape],
    ends: Mapping[str, int],
    settled_by: int,
) -> tuple[int | None, tuple[str, str, int] | None]:
    """The earliest funding settlement or contract bar with a possible trigger:
    (time, (kind, symbol, index)), or (None, None). Settlements count up to ``settled_by``."""
    best_ts: int | None = None
    best: tuple[str, str, int] | None = None
    for sym, s in series.items():
        tape = funding.get(sym)
        if tape is not None and tape.cursor < len(tape.ts) and tape.ts[tape.cursor] <= settled_by:
            t = int(tape.ts[tape.cursor])
            if best_ts is None or t < best_ts or (t == best_ts and best and best[0] == "bar"):
                best_ts, best = t, ("funding", sym, tape.cursor)
        down, up = trigger_bounds(ex, sym)
        idx = _first_hit(s, s.cursor, ends[sym], down, up)
        if idx >= 0:
            t = int(s.ts[idx])
            if best_ts is None or t < best_ts:
                best_ts, best = t, ("bar", sym, idx)
    return best_ts, best


def _joint_event(
    path: AccountPath, cross: bool, floor: float | None, best_ts: int | None
) -> tuple[str, int] | None:
    """("account", k) for a cross liquidation or ("guard", k) for a guard breach on candle ``k``
    of ``path``, if it comes strictly before the contracts' own next event ``best_ts``. Ties go
    to the contract's bar first (its stops and liquidation rules); the joint search then looks
    at that bar again with the positions it left."""
    k_liq = first_cross_liquidation(path) if cross else -1
    k_guard = first_breach(path.worst_equity, floor) if floor is not None else -1
    joint: tuple[str, int] | None = None
    for kind, k in (("account", k_liq), ("guard", k_guard)):
        if k < 0 or (best_ts is not None and int(path.ts[k]) >= best_ts):
            continue
        if joint is None or k < joint[1]:
            joint = (kind, k)
    return joint


def _candle_done(
    close: int, path: AccountPath | None, joint: tuple[str, int] | None, next_ts: int | None
) -> bool:
    """Whether every event before ``close`` has run: the next one (the joint path's, else the
    contracts' own at ``next_ts``) is at or after it, or there is none."""
    following = int(path.ts[joint[1]]) if joint is not None and path is not None else next_ts
    return following is None or following >= close


def _stops_hit(
    ex: SimAccount,
    series: Mapping[str, TriggerSeries],
    funding: Mapping[str, FundingTape],
    moved: tuple[int, int],
    settled_by: int,
) -> GuardHit | None:
    """The guard's hit at the close of the candle ``moved`` (open, close) on which the wallet
    moved, if a resting stop is left beyond the liquidation price there (see :func:`advance`):
    the account is brought to that close, settlements up to it included, as for a floor hit."""
    opened, close = moved
    if not _stop_past_liquidation(ex, _marks_through(ex, series, opened)):
        return None
    _through(ex, series, opened)
    _settle_through(ex, series, funding, min(close, settled_by))
    return GuardHit(close, None)


def _marks_through(
    ex: SimAccount, series: Mapping[str, TriggerSeries], ts: int
) -> dict[str, Decimal]:
    """The marks :func:`_through` would leave (every bar opening at or before ``ts`` closed),
    without moving anything."""
    marks = dict(ex.marks)
    for sym, s in series.items():
        j = int(s.ts.searchsorted(ts, side="right"))
        if j > s.cursor:
            marks[sym] = s.close_at(j - 1)
    return marks


def _stop_past_liquidation(ex: SimAccount, marks: dict[str, Decimal]) -> bool:
    """Whether a position has a resting stop that is no longer strictly between its mark and its
    liquidation price at ``marks`` (the protection invariant, docs/architecture.md)."""
    book = ex.book
    for sym, pos in book.positions.items():
        if pos.qty == 0 or sym not in marks:
            continue
        closing = OrderSide.SELL if pos.qty > 0 else OrderSide.BUY
        stops = [
            o.trigger_price
            for o in ex.resting[sym].values()
            if o.type is OrderType.STOP_MARKET and o.side is closing and o.trigger_price
        ]
        if not stops:
            continue
        mark = marks[sym]
        liq = book.liquidation_price(sym, marks)
        for trig in stops:
            if pos.qty > 0 and not ((liq is None or liq < trig) and trig < mark):
                return True
            if pos.qty < 0 and not ((liq is None or trig < liq) and mark < trig):
                return True
    return False


def _flat_below(ex: SimAccount, floor: Decimal) -> bool:
    book = ex.book
    return book.wallet <= floor and all(p.qty == 0 for p in book.positions.values())


def _through(ex: SimAccount, series: Mapping[str, TriggerSeries], ts: int) -> None:
    """Move every contract past the bar that opens at ``ts`` (it had no event of its own)."""
    for sym, s in series.items():
        j = int(s.ts.searchsorted(ts, side="right"))
        if j > s.cursor:
            ex.marks[sym] = to_decimal(s.close[j - 1])
            s.cursor = j
    ex.processed_ms = max(ex.processed_ms, ts)


def _liquidate_joint(
    ex: SimAccount, series: Mapping[str, TriggerSeries], path: AccountPath, k: int
) -> None:
    """Liquidate the cross account on candle ``k`` of ``path`` at the joint-path prices."""
    t = int(path.ts[k])
    frac = joint_fraction(
        float(path.open_equity[k]),
        float(path.worst_equity[k]),
        float(path.open_maintenance[k]),
        float(path.worst_maintenance[k]),
    )
    prices: dict[str, Decimal] = {}
    for sym, pos in ex.book.positions.items():
        if pos.qty == 0:
            continue
        s = series.get(sym)
        if s is None:
            prices[sym] = ex.marks[sym]
            continue
        j = int(s.ts.searchsorted(t, side="right")) - 1
        if j < 0:
            prices[sym] = ex.marks[sym]
            continue
        o = float(s.open[j])
        a = float(s.low[j]) if pos.qty > 0 else float(s.high[j])
        prices[sym] = to_decimal(o + frac * (a - o))
    liquidate_account(ex, t, prices)
    for sym, s in series.items():
        j = int(s.ts.searchsorted(t, side="right"))
        if j > s.cursor and sym in prices:
            ex.marks[sym] = to_decimal(s.close[j - 1])
            s.cursor = j


def _catch_up(ex: SimAccount, series: Mapping[str, TriggerSeries], ts: int) -> None:
    """Move every contract's cursor and mark to just before ``ts`` (those bars had no event)."""
    for sym, s in series.items():
        j = int(s.ts.searchsorted(ts, side="left"))
        if j > s.cursor:
            ex.marks[sym] = to_decimal(s.close[j - 1])
            s.cursor = j
