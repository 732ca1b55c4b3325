"""Trigger evaluation for the simulated exchange: one bar at a time, and vectorised over history.

Between two decision ticks the replay calls :func:`advance` with the mark-price (trigger) bars of
every contract. It finds, with numpy and without touching the policy, the first bar where any
resting conditional order or the liquidation price could fire, or the next funding settlement,
handles that one event in Python (:func:`process_bar`), and searches again from there. Bars with
no event cost a few vectorised comparisons, so a year of 1-minute bars is not a year of Python
loops. The fill rules are in :mod:`bot.sim.exchange`'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from bot.domain.enums import MarginMode, OrderSide, OrderStatus, OrderType
from bot.domain.orders import Order
from bot.errors import OrderRejected
from bot.sim.events import SimEvent, SimEventKind

if TYPE_CHECKING:  # annotations only: the exchange imports this module to process its bars
    from bot.sim.exchange import SimulatedExchange

ZERO = Decimal(0)
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def to_decimal(x: float) -> Decimal:
    """Exact decimal of a price read from a CSV (shortest repr round-trips the text)."""
    return Decimal(repr(float(x)))


@dataclass(slots=True)
class TriggerSeries:
    """The bars triggers are evaluated on for one contract (mark price where the data has it)."""

    ts: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    tf_ms: int
    source: str  # "mark" or "last", for the report
    cursor: int = 0


@dataclass(slots=True)
class FundingTape:
    """Settlement times and rates for one contract, consumed in order."""

    ts: IntArray
    rate: FloatArray
    cursor: int = 0
    interval_hours: list[Decimal] = field(default_factory=list)


def _fires(order: Order, o: Decimal, h: Decimal, low: Decimal) -> tuple[bool, bool]:
    """(fires within the bar, already beyond the trigger at the open)."""
    trig = order.trigger_price
    assert trig is not None  # noqa: S101 - conditional orders always carry one
    falls = (order.type is OrderType.STOP_MARKET) == (order.side is OrderSide.SELL)
    if falls:
        return low <= trig, o <= trig
    return h >= trig, o >= trig


def process_bar(
    ex: SimulatedExchange, symbol: str, ts: int, o: Decimal, h: Decimal, low: Decimal, c: Decimal
) -> None:
    """Run every trigger and the liquidation check of ``symbol`` on one bar, in rule order."""
    book = ex.book
    fired: set[str] = set()
    prev = ex.marks.get(symbol, o)  # the price before the bar: a gap crosses levels from here
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
            liq = book.liquidation_price(symbol, ex.marks)
            if liq is not None and ((pos.qty > 0 and low <= liq) or (pos.qty < 0 and h >= liq)):
                gapped = (pos.qty > 0 and o <= liq) or (pos.qty < 0 and o >= liq)
                # A bar that opens beyond the liquidation price: the position cannot exist at
                # that price, whatever stop rests beyond it; the liquidation engine takes it.
                key = (0, -1, ZERO) if gapped else (1, 0, abs(o - liq))
                if best is None or key <= best[0]:
                    _liquidate(ex, symbol, ts, o if gapped else liq)
                    continue
        if best is None:
            break
        _, first, gapped = best
        if first is None:
            break
        fired.add(first.client_id)
        _trigger(ex, first, ts, o if gapped else (first.trigger_price or o))
    ex.marks[symbol] = c


def _trigger(ex: SimulatedExchange, order: Order, ts: int, price: Decimal) -> None:
    del ex.resting[order.symbol][order.client_id]
    kind = (
        SimEventKind.STOP_LOSS if order.type is OrderType.STOP_MARKET else SimEventKind.TAKE_PROFIT
    )
    ex.marks[order.symbol] = price
    try:
        filled = ex._fill_market(order, price, ts)
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


def _liquidate(ex: SimulatedExchange, symbol: str, ts: int, price: Decimal) -> None:
    book = ex.book
    ex.marks[symbol] = price
    symbols = [symbol]
    if book.margin_mode is MarginMode.CROSS:
        # A cross liquidation takes the whole account: every cross position goes.
        symbols += [s for s, p in book.positions.items() if p.qty != 0 and s != symbol]
    for sym in symbols:
        pos = book.positions[sym]
        qty = pos.qty
        fill_price = price if sym == symbol else ex.marks[sym]
        inst = book.instruments[sym]
        result = book.liquidate(sym, fill_price, inst.liquidation_fee)
        ex.fees_paid += result.fee
        ex.events.append(
            SimEvent(
                ts_ms=ts,
                kind=SimEventKind.LIQUIDATION,
                symbol=sym,
                detail=f"{qty} @ {fill_price}",
                amount=result.realized_pnl,
            )
        )
        from bot.domain.orders import Fill  # local to keep the hot path import-free

        ex.fills.append(
            Fill(
                client_id=f"liquidation-{sym}-{ts}",
                symbol=sym,
                side=OrderSide.SELL if qty > 0 else OrderSide.BUY,
                qty=abs(qty),
                price=fill_price,
                fee=result.fee,
                timestamp_ms=ts,
                purpose=None,
                realized_pnl=result.realized_pnl,
                liquidation=True,
            )
        )


def settle_funding(
    ex: SimulatedExchange, symbol: str, ts: int, rate: Decimal, mark: Decimal
) -> None:
    """Charge (or pay) one funding settlement on the position held at ``ts``."""
    pos = ex.book.positions[symbol]
    if pos.qty == 0:
        return
    amount = pos.qty * mark * rate  # > 0: paid by the holder
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


def trigger_bounds(ex: SimulatedExchange, symbol: str) -> tuple[float, float]:
    """(down, up): a bar with low <= down or high >= up may fire something; +-inf if nothing."""
    down = -np.inf
    up = np.inf
    for order in ex.resting[symbol].values():
        trig = float(order.trigger_price or 0)
        falls = (order.type is OrderType.STOP_MARKET) == (order.side is OrderSide.SELL)
        if falls:
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
    if i0 >= i1 or (down == -np.inf and up == np.inf):
        return -1
    hit = (s.low[i0:i1] <= down) | (s.high[i0:i1] >= up)
    k = int(hit.argmax())
    return i0 + k if hit[k] else -1


def advance(
    ex: SimulatedExchange,
    series: Mapping[str, TriggerSeries],
    funding: Mapping[str, FundingTape],
    end_ms: int,
) -> None:
    """Process every bar that closes at or before ``end_ms`` and every settlement up to it."""
    ends = {
        sym: int(s.ts.searchsorted(end_ms - s.tf_ms, side="right")) for sym, s in series.items()
    }
    while True:
        best_ts: int | None = None
        best: tuple[str, str, int] | None = None  # (kind, symbol, index)
        for sym, s in series.items():
            tape = funding.get(sym)
            if tape is not None and tape.cursor < len(tape.ts) and tape.ts[tape.cursor] <= end_ms:
                t = int(tape.ts[tape.cursor])
                if best_ts is None or t < best_ts or (t == best_ts and best and best[0] == "bar"):
                    best_ts, best = t, ("funding", sym, tape.cursor)
            down, up = trigger_bounds(ex, sym)
            idx = _first_hit(s, s.cursor, ends[sym], down, up)
            if idx >= 0:
                t = int(s.ts[idx])
                if best_ts is None or t < best_ts:
                    best_ts, best = t, ("bar", sym, idx)
        if best is None or best_ts is None:
            break
        _catch_up(ex, series, best_ts)
        kind, sym, idx = best
        if kind == "funding":
            tape = funding[sym]
            tape.cursor += 1
            s = series[sym]
            j = min(int(s.ts.searchsorted(best_ts, side="left")), len(s.ts) - 1)
            mark = to_decimal(s.open[j]) if s.ts[j] == best_ts else ex.marks.get(sym, ZERO)
            if mark > 0:
                settle_funding(ex, sym, best_ts, to_decimal(tape.rate[idx]), mark)
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
            )
            s.cursor = idx + 1
    for sym, s in series.items():
        if ends[sym] > s.cursor:
            ex.marks[sym] = to_decimal(s.close[ends[sym] - 1])
        s.cursor = max(s.cursor, ends[sym])
    ex.processed_ms = max(ex.processed_ms, end_ms)


def _catch_up(ex: SimulatedExchange, series: Mapping[str, TriggerSeries], ts: int) -> None:
    """Move every contract's cursor and mark to just before ``ts`` (those bars had no event)."""
    for sym, s in series.items():
        j = int(s.ts.searchsorted(ts, side="left"))
        if j > s.cursor:
            ex.marks[sym] = to_decimal(s.close[j - 1])
            s.cursor = j
