"""The account's worst equity candle by candle, vectorised, for the guard and cross liquidation.

Within one candle the joint path of several contracts is unknown. The rule used here is never
more optimistic than reality: **every contract is at its adverse extreme together** (a long at
the candle's low, a short at its high). The account's worst equity on a candle is the wallet plus
every position's PnL at those extremes; the cross maintenance margin is taken at the same
prices, each position's as :func:`bot.domain.margin.cross_maintenance` holds it (a Bybit long
to its value at entry too: :func:`cross_maintenance_vec`). When a cross account is liquidated
inside a candle, the fill prices are the points of the straight joint path from every
contract's open to its adverse extreme where equity first equals the maintenance margin (the
open itself if the account is already under it there), moved by slippage and onto the tick
against each position as every liquidation is (:mod:`bot.sim.triggers`). The search itself
reads no fill price: positions' entries, the marks and the levels that trigger.

Positions do not change between the events :func:`bot.sim.triggers.advance` processes, so one
search covers every candle up to the next event.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument, MarginModel
from bot.sim.account_state import BookAndMarks

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
_BYBIT = MarginModel.BYBIT_UTA  # bound once: a member looked up on its enum class is slow


class SeriesLike(Protocol):
    """What the search reads of a :class:`bot.sim.triggers.TriggerSeries`."""

    @property
    def ts(self) -> IntArray: ...
    @property
    def open(self) -> FloatArray: ...
    @property
    def high(self) -> FloatArray: ...
    @property
    def low(self) -> FloatArray: ...
    @property
    def tf_ms(self) -> int: ...

    def opened_before(self, ms: int) -> int:
        """``searchsorted(ts, ms, side="left")``."""
        ...

    def extremes(self, i0: int, i1: int) -> tuple[float, float]:
        """The lowest low and the highest high of bars ``[i0, i1)``."""
        ...


@dataclass(frozen=True, slots=True)
class AccountPath:
    """Per candle of the reference grid (open times ``ts``, length ``tf_ms``)."""

    ts: IntArray
    tf_ms: int
    worst_equity: FloatArray
    open_equity: FloatArray
    worst_maintenance: FloatArray  # zeros unless the account is cross
    open_maintenance: FloatArray


@lru_cache(maxsize=256)
def _bracket_arrays(inst: Instrument) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per tier: notional floor, maintenance rate, deduction. On Bybit the rate also holds the
    taker fee to close (:func:`bot.domain.margin.maintenance_margin`: the estimated fee to
    close is part of the UTA's maintenance margin), so the search liquidates a cross account
    where the exact check does; without it a Bybit account was liquidated only once its
    equity fell the fee to close below Bybit's maintenance."""
    fee = float(inst.taker_fee) if inst.margin_model is MarginModel.BYBIT_UTA else 0.0
    floors = np.array([float(b.notional_floor) for b in inst.brackets])
    rates = np.array([float(b.maint_margin_rate) + fee for b in inst.brackets])
    cums = np.array([float(b.maint_amount) for b in inst.brackets])
    return floors, rates, cums


def maintenance_vec(inst: Instrument, notional: FloatArray) -> FloatArray:
    """Maintenance margin of ``|notional|`` (:func:`bot.domain.margin.maintenance_margin`: tiered,
    Bybit's fee to close included), element-wise (floats, for the search only)."""
    floors, rates, cums = _bracket_arrays(inst)
    n = np.abs(notional)
    k = np.clip(np.searchsorted(floors, n, side="right") - 1, 0, len(floors) - 1)
    out: FloatArray = n * rates[k] - cums[k]
    return out


@lru_cache(maxsize=256)
def _bracket_lists(inst: Instrument) -> tuple[list[float], list[float], list[float]]:
    floors, rates, cums = _bracket_arrays(inst)
    return floors.tolist(), rates.tolist(), cums.tolist()


def maintenance_one(inst: Instrument, notional: float) -> float:
    """:func:`maintenance_vec` of one notional, in plain floats (the same operations, so the
    same result to the last bit, without numpy's cost for a single value)."""
    floors, rates, cums = _bracket_lists(inst)
    n = abs(notional)
    k = min(max(bisect_right(floors, n) - 1, 0), len(floors) - 1)
    return n * rates[k] - cums[k]


@lru_cache(maxsize=256)
def _tier_lists(inst: Instrument) -> tuple[list[float], list[float], list[float]]:
    """Per tier: notional floor, maintenance rate (without a fee), deduction."""
    brackets = inst.brackets
    return (
        [float(b.notional_floor) for b in brackets],
        [float(b.maint_margin_rate) for b in brackets],
        [float(b.maint_amount) for b in brackets],
    )


def _tiered_one(inst: Instrument, notional: float) -> float:
    """The tiered maintenance of ``|notional|``, no fee (``margin._tiered_maintenance``)."""
    floors, rates, cums = _tier_lists(inst)
    n = abs(notional)
    k = min(max(bisect_right(floors, n) - 1, 0), len(floors) - 1)
    return n * rates[k] - cums[k]


def cross_maintenance_vec(
    inst: Instrument, qty: float, entry: float, prices: FloatArray
) -> FloatArray:
    """:func:`bot.domain.margin.cross_maintenance` of a position of ``qty`` entered at
    ``entry``, at each of ``prices`` (floats, for the search only). Binance: the maintenance of
    the value at the price (:func:`maintenance_vec`). Bybit: the larger of the tiered
    maintenance at entry and at the price, plus the fee to close on the value at the price,
    i.e. ``max(T(v) + fee * v, T(entry value) + fee * v)``: a long is held to its value at
    entry as the price falls, so the account is liquidated where the alerts' ratio reaches 1."""
    notional = qty * prices
    mm = maintenance_vec(inst, notional)
    if inst.margin_model is not _BYBIT:
        return mm
    at_entry = _tiered_one(inst, qty * entry) + float(inst.taker_fee) * np.abs(notional)
    out: FloatArray = np.maximum(mm, at_entry)
    return out


def cross_maintenance_one(inst: Instrument, qty: float, entry: float, price: float) -> float:
    """:func:`cross_maintenance_vec` at one price, in plain floats (the same operations)."""
    notional = abs(qty) * price
    mm = maintenance_one(inst, notional)
    if inst.margin_model is not _BYBIT:
        return mm
    return max(mm, _tiered_one(inst, qty * entry) + float(inst.taker_fee) * notional)


def account_path(
    ex: BookAndMarks,
    series: Mapping[str, SeriesLike],
    ends: Mapping[str, int],
    from_ms: int,
) -> AccountPath | None:
    """The worst equity per candle from ``from_ms`` up to each contract's ``ends`` index, or
    ``None`` when no position is open (equity is then the wallet and cannot fall)."""
    book = ex.book
    held = [s for s, p in book.positions.items() if p.qty != 0 and s in series]
    if not held:
        return None
    starts = {s: int(series[s].ts.searchsorted(from_ms, side="left")) for s in held}
    ref = max(held, key=lambda s: ends[s] - starts[s])
    r = series[ref]
    i0, i1 = starts[ref], ends[ref]
    if i0 >= i1:
        return None
    grid = r.ts[i0:i1]
    wallet = float(book.wallet)
    worst = np.full(len(grid), wallet)
    at_open = np.full(len(grid), wallet)
    cross = book.margin_mode is MarginMode.CROSS
    mm_worst = np.zeros(len(grid))
    mm_open = np.zeros(len(grid))
    for sym in held:
        pos = book.positions[sym]
        q = float(pos.qty)
        e = float(pos.entry_price)
        s = series[sym]
        idx = np.arange(i0, i1) if sym == ref else s.ts.searchsorted(grid, side="right") - 1
        before = idx < 0
        idx = np.maximum(idx, 0)
        extreme = s.low[idx] if q > 0 else s.high[idx]
        opens = s.open[idx]
        if before.any():
            mark = float(ex.marks.get(sym, Decimal(repr(e))))
            extreme = np.where(before, mark, extreme)
            opens = np.where(before, mark, opens)
        worst += q * (extreme - e)
        at_open += q * (opens - e)
        if cross:
            inst = book.instruments[sym]
            mm_worst += cross_maintenance_vec(inst, q, e, extreme)
            mm_open += cross_maintenance_vec(inst, q, e, opens)
    return AccountPath(grid, r.tf_ms, worst, at_open, mm_worst, mm_open)


def cannot_reach(
    ex: BookAndMarks,
    series: Mapping[str, SeriesLike],
    ends: Mapping[str, int],
    from_ms: int,
    floor: float | None,
    cross: bool,
) -> bool:
    """A cheap bound that lets most searches stop at once: True when, even with every contract
    at its worst price of the whole window at the same moment, equity stays above ``floor`` and
    (cross) above the maintenance margin at the largest notional of the window."""
    book = ex.book
    worst: float | None = None  # the wallet, then each position's worst PnL added
    mm = 0.0
    for sym, pos in book.positions.items():
        if pos.qty == 0 or sym not in series:
            continue
        s = series[sym]
        i0 = s.opened_before(from_ms)
        i1 = ends[sym]
        if i0 >= i1:
            continue
        if worst is None:
            worst = float(book.wallet)
        q = float(pos.qty)
        lo, hi = s.extremes(i0, i1)
        worst += q * ((lo if q > 0 else hi) - float(pos.entry_price))
        if cross:
            mm += cross_maintenance_one(book.instruments[sym], q, float(pos.entry_price), hi)
    if worst is None:  # nothing held over the window
        return True
    if floor is not None and worst <= floor:
        return False
    return not (cross and worst <= mm)


def first_cross_liquidation(path: AccountPath) -> int:
    """Index of the first candle where the cross account's worst equity is at or below its
    maintenance margin, or -1."""
    hit = path.worst_equity <= path.worst_maintenance
    if len(hit) == 0:
        return -1
    k = int(hit.argmax())
    return k if bool(hit[k]) else -1


def joint_fraction(open_eq: float, worst_eq: float, open_mm: float, worst_mm: float) -> float:
    """How far along the straight joint path (0 = the opens, 1 = the adverse extremes) equity
    first meets the maintenance margin. Equity is linear in the fraction; the maintenance is
    linear within a tier and convex across tiers and across a Bybit position's entry floor
    (:func:`cross_maintenance_vec`, a larger of two), so the straight line between its ends
    lies at or above it: the fraction found is at or before the true one, never after."""
    if open_eq <= open_mm:
        return 0.0
    slope = (worst_eq - open_eq) - (worst_mm - open_mm)
    if slope >= 0:
        return 1.0
    return float(min(1.0, max(0.0, (open_mm - open_eq) / slope)))
