"""Historical market data for the simulation: the decision candles, the trigger (mark) bars, the
last price and funding of every contract, behind the engine's market data port.

Which series is used for what:

* decision candles: the policy's timeframe, read from its file when the directory has one,
  otherwise resampled exactly from the finest trade candles (incomplete buckets are dropped);
  a hole in them that another trade file holds is filled from it, resampled (a download that
  skipped two hours of the hourly file beside a whole 5-minute one is no hole in the market);
* triggers (stops, take-profits, liquidation): the mark price, as on the venue. Mark candles at
  least as fine as the last-trade candles are used as they are; coarser ones hold each
  last-trade candle within the range of its mark candle (:func:`bounded_by_mark`); without mark
  candles, the last-trade candles (``trigger_source`` may force either series);
* last price (market fills, staleness): the finest last-trade candles;
* gaps are never bridged: a volatility window never spans a gap, and a missing stretch shows up as
  stale data to the risk gate.

The files chosen for one contract are held to be one contract's (:func:`check_same_contract`):
the trade file against the mark file, and every other trade file read for the decision candles
against the trade file. A file of another contract saved under this one's name is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from bot.clock import datetime_to_ms
from bot.config.models import BotConfig
from bot.config.policy import Policy
from bot.domain.market import FundingInfo
from bot.engine.market import candles_needed, longest_window
from bot.errors import DataError
from bot.marketdata.candles import Candles, FundingSeries, format_timeframe
from bot.marketdata.coverage import choose, covered_ms, covers, longest_gap, missing_ms, span_ms
from bot.marketdata.files import DataFileError, DataInventory
from bot.marketdata.funding import settled_mean
from bot.ports.market import CandleWindow, FloatArray, StatisticsSpec, WindowStatistics
from bot.sim.cursor import IntArray, TimeCursor
from bot.sim.exchange import SimulatedExchange
from bot.sim.triggers import DecimalColumn, FundingTape, TriggerSeries, to_decimal
from bot.stats.timeframes import parse_timeframe, periods_per_year
from bot.stats.window_series import trailing_atr, trailing_estimates, trailing_mean

ZERO = Decimal(0)
# The usual time between funding settlements (8 h): only a guess for the index lookups.
_FUNDING_STEP = 8 * 3_600_000


@dataclass(slots=True)
class ContractHistory:
    symbol: str
    decision: Candles
    segment_start: npt.NDArray[np.int64]  # index of the first candle of each candle's segment
    last: Candles  # finest last-trade candles
    trigger: Candles  # the bars stops, take-profits and liquidation trigger on (the mark)
    funding: FundingSeries | None
    selection: tuple[str, ...] = ()  # which timeframe was chosen per series, and why
    # The trigger bars are the trade candles held within a coarser mark (bounded_by_mark).
    trigger_on_trades: bool = False
    # Why the decision candles hold their warm-up later than a file that holds it (its holes:
    # see _decision_source); "" when they do not.
    late_start: str = ""
    # Volatility and ATR of every full decision window, per spec (see HistoricalMarket.
    # precompute): kept with the history so every policy run on it in a process shares them.
    # (volatility, ATR, mean volume per candle over the estimator's window)
    statistics: dict[StatisticsSpec, tuple[FloatArray, FloatArray, FloatArray]] = field(
        default_factory=dict
    )

    def gaps(self) -> list[tuple[int, int]]:
        """The missing stretches of the trigger bars; of the trade candles when the trigger
        bars are those held within a coarser mark (their added bars fill no hole of the data)."""
        return (self.last if self.trigger_on_trades else self.trigger).gaps()


def _segment_starts(c: Candles) -> npt.NDArray[np.int64]:
    if len(c) == 0:
        return np.zeros(0, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(c.ts) != c.tf_ms) + 1
    starts = np.zeros(len(c), dtype=np.int64)
    starts[breaks] = breaks
    return np.maximum.accumulate(starts)


def load_history(
    inventory: DataInventory,
    symbol: str,
    decision_tf: str,
    trigger_source: Literal["auto", "mark", "last"] = "auto",
    window: tuple[int | None, int | None] = (None, None),
    warmup: int = 0,
) -> ContractHistory:
    """Load every series one contract needs from a data directory.

    Per series the finest timeframe whose file covers ``window`` ([start, end) ms, None = as far
    as the files go) is used (:mod:`bot.marketdata.coverage`); the choices are in ``selection``.
    Decision candles aggregated from another file come from the finest one that also holds
    ``warmup`` decision candles before the window (the chosen last-trade file may start at the
    window: a 1d policy's warm-up is months of a 1h file).
    """
    trade_tfs = inventory.trade_timeframes(symbol)
    if not trade_tfs:
        raise DataError(f"{inventory.data_dir}: no last-trade candles for {symbol}")
    tf_ms = parse_timeframe(decision_tf)
    # Only files whose candles make the decision candles are candidates: a 1h file that covers
    # more than a 5m one is no choice for a 5m policy.
    makes = [t for t in trade_tfs if tf_ms % parse_timeframe(t) == 0]
    if not makes:
        raise DataError(
            f"{inventory.data_dir}: {symbol} has no last-trade candles that make "
            f"{decision_tf} candles (files: {', '.join(trade_tfs)}; a file's timeframe must "
            f"divide {decision_tf})"
        )
    start, end = window
    picked = choose(inventory, symbol, "trade", makes, start, end)
    last = picked.candles
    notes = [picked.note]
    decision, late_start = _decisions(inventory, symbol, decision_tf, last, window, warmup, notes)
    blind = _decision_gaps(symbol, decision, warmup, start, end)
    if blind:
        notes.append(blind)
    mark_tfs = inventory.mark_timeframes(symbol)
    trigger = last
    held_within_mark = False
    if trigger_source == "mark" and not mark_tfs:
        raise DataError(
            f"{inventory.data_dir}: trigger_source = 'mark' but {symbol} has no mark-price candles"
        )
    if mark_tfs and trigger_source != "last":
        usable = [
            t for t in mark_tfs if trigger_source == "mark" or parse_timeframe(t) <= last.tf_ms
        ]
        coarser = [t for t in mark_tfs if parse_timeframe(t) % last.tf_ms == 0]
        if not usable and coarser:
            # "auto" with mark candles coarser than the trade candles (hourly marks beside
            # 5-minute trades): the venue triggers stops and liquidates on the mark, which a
            # last-trade wick beyond it does not move. Each trade candle is held within the
            # range its mark candle spanned: the finer candles time the trigger, the mark
            # decides whether it fires; the trade candle is what a stop fills against.
            mark = choose(inventory, symbol, "mark", coarser, start, end)
            check_same_contract(last, mark.candles)
            trigger = bounded_by_mark(last, mark.candles)
            held_within_mark = True
            notes.append(mark.note)
            notes.append(
                f"{symbol} triggers: the {format_timeframe(last.tf_ms)} last-trade candles held "
                f"within the range of their {format_timeframe(mark.candles.tf_ms)} mark candle "
                "(stops and liquidation trigger on the mark, as on the venue; a trade wick "
                "beyond the mark's range does not trigger them)"
            )
        elif usable:
            mark = choose(inventory, symbol, "mark", usable, start, end)
            check_same_contract(last, mark.candles)
            notes.append(mark.note)
            trigger = _mark_with_trades_in_holes(symbol, mark.candles, last, notes)
            if trigger.tf_ms > tf_ms:
                # A bar is known when it closes: a stop inside it is found at its close, after
                # the decisions in between saw the position still open.
                notes.append(
                    f"{symbol} triggers: the {format_timeframe(trigger.tf_ms)} mark candles are "
                    f"coarser than the {decision_tf} decisions: a stop or liquidation inside a "
                    f"mark candle is found when it closes (its fill is dated at the candle's "
                    f"start), after the decisions in between saw the position open; "
                    '[simulation] trigger_source = "auto" triggers on the finer last-trade '
                    "candles"
                )
    funding = inventory.load_funding(symbol) if inventory.has_funding(symbol) else None
    notes += _funding_gap(symbol, funding, start, end, last)
    return ContractHistory(
        symbol,
        decision,
        _segment_starts(decision),
        last,
        trigger,
        funding,
        tuple(notes),
        trigger_on_trades=held_within_mark,
        late_start=late_start,
    )


SAME_CONTRACT = 2.0
"""The most two files of one contract's name may differ by: the median ratio of their closes at
the same instants, and a day of such closes in a row (:data:`FOREIGN_RUN_MS`). The mark of a
perpetual is its index price plus a basis the venue keeps small, and the last price trades
around it: on the shared Binance and Bybit history (BTC, ETH, SOL, XRP; 1m to 1h trade files
against 1h and 8h mark files, 2019 to 2025) no last close is more than 2.5 % off the mark close
of the same instant, and two trade files of one contract close at the same prices. SOL's file
against ETH's differs by a factor of 20, BTC's against ETH's by 25. A crash wick in which the
last price fell far under the mark lasts minutes: it moves neither a median nor a day."""

FOREIGN_RUN_MS = 86_400_000
"""How long closes may differ by more than :data:`SAME_CONTRACT` in a row (from the first such
close to the last, at least :data:`MIN_SHARED` of them) before the files are refused with a
median inside it: a file that holds another contract's prices for part of its span (two
downloads joined)."""

MIN_SHARED = 5
"""Closes at the same instants below which two files are not compared (a median of one or two
rows could be a crash wick)."""


def check_same_contract(a: Candles, b: Candles) -> None:
    """Raise :class:`DataFileError` when ``a`` and ``b``, two files chosen for one contract,
    hold two contracts' prices: the median ratio of their closes at the same instants (a candle
    of each closing then; any timeframes on the epoch grid) outside :data:`SAME_CONTRACT`, or a
    day of closes in a row outside it. The error names both files and the first row where they
    disagree. Vectorised and cheap (:func:`_same_times`; the median only when some closes are
    that far apart): about 1 ms for a year of 1m candles against an hourly mark file, 10 to 20 ms
    against a 1m one. Both are as loaded from their files (row ``i`` is line ``i + 2``)."""
    if len(a) == 0 or len(b) == 0:
        return
    a_end, b_end = a.ts + a.tf_ms, b.ts + b.tf_ms
    a_short = len(a_end) <= len(b_end)
    short, long_ = (a_end, b_end) if a_short else (b_end, a_end)
    i_short, i_long = _same_times(short, long_, b.tf_ms if a_short else a.tf_ms)
    if len(i_short) < MIN_SHARED:
        return
    ia, ib = (i_short, i_long) if a_short else (i_long, i_short)
    ratio = a.close[ia] / b.close[ib]
    off = (ratio > SAME_CONTRACT) | (ratio < 1 / SAME_CONTRACT)
    if not off.any():  # (every real pair of files)
        return
    median = float(np.median(ratio))
    if not 1 / SAME_CONTRACT <= median <= SAME_CONTRACT:
        k = int(np.flatnonzero(off)[0])
        why = f"the median of their {len(ratio)} closes at the same times differs by a factor of"
        raise DataFileError(_not_same(a, b, int(ia[k]), int(ib[k]), f"{why} {_factor(median)}"))
    # runs of closes in a row beyond the bound, and how long each lasted
    edges = np.diff(np.r_[0, off.view(np.int8), 0])
    first, final = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    lasted = a_end[ia[final]] - a_end[ia[first]]
    # (closes in a row among those both files hold: two wicks on either side of a hole in the
    # data are no run of a day)
    long_runs = np.flatnonzero((lasted >= FOREIGN_RUN_MS) & (final - first + 1 >= MIN_SHARED))
    if len(long_runs):
        r = int(long_runs[0])
        k = int(first[r])
        why = (
            f"their closes differ by more than a factor of {SAME_CONTRACT:g} from "
            f"{_iso(int(a_end[ia[k]]))} to {_iso(int(a_end[ia[final[r]]]))} "
            f"({int(final[r] - k) + 1} closes at the same times in a row)"
        )
        raise DataFileError(_not_same(a, b, int(ia[k]), int(ib[k]), why))


def _same_times(short: IntArray, long_: IntArray, step: int) -> tuple[IntArray, IntArray]:
    """The indices into ``short`` and ``long_`` (sorted times, ``long_`` on a grid of ``step``)
    of the times both hold. Each time's place in ``long_`` is first read off the grid (exact
    for a file without holes: a year of 1m candles in a few ms), and searched for only where
    that misses (after a hole, or a time ``long_`` lacks)."""
    n = len(long_)
    at = (short - long_[0]) // step
    inside = (at >= 0) & (at < n)
    at[~inside] = 0
    hit = inside & (long_[at] == short)
    if n and int(long_[-1] - long_[0]) // step + 1 != n:  # holes: the grid misplaces some
        miss = np.flatnonzero(~hit)
        found = np.searchsorted(long_, short[miss])
        ok = found < n
        ok[ok] = long_[found[ok]] == short[miss[ok]]
        at[miss[ok]] = found[ok]
        hit[miss[ok]] = True
    i_short = np.flatnonzero(hit)
    return i_short, at[i_short]


def _factor(ratio: float) -> str:
    return f"{max(ratio, 1 / ratio):.3g}"


def _not_same(a: Candles, b: Candles, i: int, j: int, why: str) -> str:
    ratio = float(a.close[i] / b.close[j])
    same = (
        "two last-trade files of one contract close at the same prices"
        if a.kind == b.kind
        else "the last price and the mark of one perpetual stay within a few percent"
    )
    return (
        f"{a.source} line {i + 2} close {float(a.close[i])!r} vs {b.source} line {j + 2} close "
        f"{float(b.close[j])!r} (a factor of {_factor(ratio)}, both closing at "
        f"{_iso(int(a.ts[i]) + a.tf_ms)}): not the same contract? {why} ({same}; refused "
        f"beyond a factor of {SAME_CONTRACT:g}): is another contract's file saved under "
        f"{a.symbol}'s name?"
    )


def bounded_by_mark(last: Candles, mark: Candles) -> Candles:
    """Mark-price bars at the trade candles' resolution: each last-trade candle's prices
    clipped to the low-high range of the (coarser) mark candle it lies in; a trade candle with
    no mark candle around it is kept as it is (as before: the last price triggers there).

    A level the mark never reached in its bar is never reached by the bars made here (a wick
    of the last price beyond the mark moves no stop the venue holds on the mark); a level both
    reached is reached in the first trade candle that reached it. A mark bar's own low (high)
    is reached too: when the mark went below (above) every trade of its bar, the trade candle
    that came nearest, the first of equals, carries the mark's extreme (:func:`_reach_extremes`):
    the venue triggers a stop the mark reached even when no trade did, and the likeliest time
    of the mark's extreme is that of the book's.

    A mark bar with no trade candle in it, inside the trade candles' span (a hole in the trade
    data while the mark went on), gets one bar of its own, the mark's, in its last trade-candle
    slot (:func:`_with_marks_the_trades_skipped`): the venue triggers on the mark through such
    an hour, and the bar closes when the mark's bar does (no look-ahead for the decisions
    inside the hour). The trade candles' gaps stay what :meth:`ContractHistory.gaps` reports.
    """
    n = len(last.ts)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    k = np.zeros(n, dtype=np.intp)
    inside = np.zeros(n, dtype=bool)
    if len(mark.ts) and n:
        j = np.searchsorted(mark.ts, last.ts, side="right") - 1
        k = np.maximum(j, 0)
        inside = (j >= 0) & (last.ts + last.tf_ms <= mark.ts[k] + mark.tf_ms)
        lo[inside] = mark.low[k[inside]]
        hi[inside] = mark.high[k[inside]]

    def clip(a: FloatArray) -> FloatArray:
        out: FloatArray = np.minimum(np.maximum(a, lo), hi)
        return out

    low, high = clip(last.low), clip(last.high)
    _reach_extremes(low, high, np.flatnonzero(inside), k, mark)
    opens, closes = clip(last.open), clip(last.close)
    ts, opens, high, low, closes = _with_marks_the_trades_skipped(
        last, mark, k[inside], (last.ts, opens, high, low, closes)
    )
    for a in (opens, high, low, closes):
        a.flags.writeable = False
    if ts is not last.ts:  # (the trade candles' own times stay as their owner left them)
        ts.flags.writeable = False
    volume = np.zeros(len(ts))
    volume.flags.writeable = False
    return Candles(
        ts=ts,
        open=opens,
        high=high,
        low=low,
        close=closes,
        volume=volume,
        tf_ms=last.tf_ms,
        symbol=last.symbol,
        kind="mark",
        source=f"{last.source} within the range of {mark.source}",
    )


def _mark_with_trades_in_holes(
    symbol: str, mark: Candles, last: Candles, notes: list[str]
) -> Candles:
    """:func:`with_trades_in_mark_holes`, said in ``notes`` when it added a candle."""
    trigger, filled = with_trades_in_mark_holes(mark, last)
    if filled:
        notes.append(
            f"{symbol} triggers: {filled} {format_timeframe(last.tf_ms)} last-trade "
            f"candle(s) where the {format_timeframe(mark.tf_ms)} mark candles "
            "have a hole (stops and liquidation trigger on the last price there, as "
            "where a coarser mark file has none)"
        )
    return trigger


def with_trades_in_mark_holes(mark: Candles, last: Candles) -> tuple[Candles, int]:
    """``mark`` with a bar for each last-trade candle that lies inside the mark candles' span
    but has no mark candle in it (a hole in the mark file while the trade candles go on), and
    how many were added. Without them nothing could fire in such a hole: a stop or liquidation
    the last price went through would wait for the first mark bar after it. The bar is the
    trade candle's own, at the last mark slot of its time (it closes when the trade candle
    closes: no look-ahead for the decisions inside it), as :func:`bounded_by_mark` keeps a
    trade candle no coarser mark candle lies around. ``mark`` as it is when there is none, or
    when its candles are coarser than, or off the grid of, the trade candles."""
    if not len(mark.ts) or not len(last.ts):
        return mark, 0
    if last.tf_ms < mark.tf_ms or last.tf_ms % mark.tf_ms != 0:
        return mark, 0
    lo = np.searchsorted(mark.ts, last.ts, side="left")
    hi = np.searchsorted(mark.ts, last.ts + last.tf_ms, side="left")
    spanned = (last.ts >= mark.ts[0]) & (last.ts + last.tf_ms <= mark.ts[-1] + mark.tf_ms)
    j = np.flatnonzero((lo == hi) & spanned)
    if not len(j):
        return mark, 0
    ts = np.concatenate([mark.ts, last.ts[j] + last.tf_ms - mark.tf_ms])
    order = np.argsort(ts, kind="stable")

    def merged(a: FloatArray, b: FloatArray) -> FloatArray:
        out: FloatArray = np.concatenate([a, b[j]])[order]
        out.flags.writeable = False
        return out

    ts = ts[order]
    ts.flags.writeable = False
    return Candles(
        ts=ts,
        open=merged(mark.open, last.open),
        high=merged(mark.high, last.high),
        low=merged(mark.low, last.low),
        close=merged(mark.close, last.close),
        volume=merged(mark.volume, np.zeros(len(last.ts))),
        tf_ms=mark.tf_ms,
        symbol=mark.symbol,
        kind="mark",
        source=f"{mark.source} with {last.source} in its holes",
    ), len(j)


_Bars = tuple[
    npt.NDArray[np.int64], FloatArray, FloatArray, FloatArray, FloatArray
]  # ts, open, high, low, close


def _with_marks_the_trades_skipped(
    last: Candles, mark: Candles, covered: npt.NDArray[np.intp], bars: _Bars
) -> _Bars:
    """``bars`` (on the trade candles' times) with a bar added for each mark bar that no trade
    candle lies in (``covered``: the mark bars that have one), between the first trade candle
    and the end of the last: the mark's own open, high, low and close, at the last trade-candle
    slot of its bar. ``bars`` as they are when there is none (the usual case)."""
    n = len(last.ts)
    if not n or not len(mark.ts):
        return bars
    skipped = np.ones(len(mark.ts), dtype=bool)
    skipped[covered] = False
    skipped &= (mark.ts >= last.ts[0]) & (mark.ts + mark.tf_ms <= last.ts[-1] + last.tf_ms)
    j = np.flatnonzero(skipped)
    if not len(j):
        return bars
    ts = np.concatenate([bars[0], mark.ts[j] + mark.tf_ms - last.tf_ms])
    order = np.argsort(ts, kind="stable")
    added = (mark.open[j], mark.high[j], mark.low[j], mark.close[j])
    prices = [np.concatenate([a, b])[order] for a, b in zip(bars[1:], added, strict=True)]
    return ts[order], prices[0], prices[1], prices[2], prices[3]


def _reach_extremes(
    low: FloatArray,
    high: FloatArray,
    idx: npt.NDArray[np.intp],
    k: npt.NDArray[np.intp],
    mark: Candles,
) -> None:
    """In place: for each mark bar, the clipped trade candle (of ``idx``, the candles inside a
    mark bar, ``k`` their mark bar) with the lowest low takes the mark's low if no candle reached
    it, and the one with the highest high its high. The candles are in time order, so a mark
    bar's candles are one run of ``idx``; the stable sort keeps the first of equal extremes."""
    if not len(idx):
        return
    group = k[idx]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    bar = group[starts]
    lowest = idx[np.lexsort((low[idx], group))[starts]]
    short = low[lowest] > mark.low[bar]
    low[lowest[short]] = mark.low[bar[short]]
    highest = idx[np.lexsort((-high[idx], group))[starts]]
    short = high[highest] < mark.high[bar]
    high[highest[short]] = mark.high[bar[short]]


def _funding_gap(
    symbol: str, funding: FundingSeries | None, start: int | None, end: int | None, last: Candles
) -> list[str]:
    """Notes when the funding data does not cover the window (requested, else the candles'):
    a perpetual simulated without its funding is paid or charged nothing, which is said, not
    hidden (none when the settlements cover it). The settlements due before the file's first or
    after its last are counted at the file's own interval at that end: an hourly file that
    stops seven hours early misses seven settlements, which an 8-hourly step would not see."""
    lo = start if start is not None else int(last.ts[0])
    hi = end if end is not None else int(last.ts[-1]) + last.tf_ms
    if funding is None or len(funding.ts) == 0:
        return [f"{symbol} funding: no funding file: no funding is paid or received"]
    first, final = int(funding.ts[0]), int(funding.ts[-1])
    head, tail = _end_steps(funding)
    # Settlements due strictly inside the window before the first one and after the last (one
    # at the window's start is not the run's: it settles what was held before it).
    before = max(0, -(-(first - lo) // head) - 1)
    after = max(0, -(-(hi - final) // tail) - 1)
    notes = []
    if before or after:
        missing = [
            f"{n} settlement(s) missing at the {where} (at the file's {_hours(step)} interval "
            "there)"
            for n, where, step in ((before, "start", head), (after, "end", tail))
            if n
        ]
        notes.append(
            f"{symbol} funding: settlements {_iso(first)} .. {_iso(final)} do not cover "
            f"{_iso(lo)} .. {_iso(hi)}, {' and '.join(missing)}: no funding is paid or received "
            "outside them"
        )
    holes = _funding_holes(symbol, funding, lo, hi)
    if holes:
        notes.append(holes)
    return notes


def _end_steps(funding: FundingSeries) -> tuple[int, int]:
    """The file's interval (ms) at its first and at its last settlement; settlements are at
    most 8 h apart on the venues the bot trades (some 4 h, 1 h): 8 h for a single one."""
    if len(funding.ts) < 2:
        return _FUNDING_STEP, _FUNDING_STEP
    return (
        round(funding.settlement_hours_at(0) * 3_600_000),
        round(funding.settlement_hours_at(-1) * 3_600_000),
    )


def _hours(ms: int) -> str:
    return f"{ms / 3_600_000:g} h"


def _funding_holes(symbol: str, funding: FundingSeries, lo: int, hi: int) -> str:
    """A note for settlements missing inside the window, where nothing is paid or received ("" when
    there is none). A hole is a step between two settlements that the data's own interval
    divides (:func:`~bot.marketdata.candles.settlement_step`): one missing hourly settlement
    (1 h, 2 h, 1 h) as much as days missing from an 8-hourly file. The simulator charges the
    settlements in the file and nothing for a missing one (none is invented, at any rate): said
    here, with how many and the longest."""
    inside = np.flatnonzero((funding.ts > lo - _FUNDING_STEP) & (funding.ts <= hi + _FUNDING_STEP))
    holes: list[tuple[int, int, int]] = []  # (settlement after the hole, missing, hours)
    for i in inside.tolist():
        if i == 0:
            continue
        covers, missing = funding.step_at(i)
        if missing:
            holes.append((i, missing, round(missing * covers)))
    if not holes:
        return ""
    k = max(holes, key=lambda h: h[2])[0]
    hours = sum(h[2] for h in holes)
    settlements = sum(h[1] for h in holes)
    return (
        f"{symbol} funding: {len(holes)} hole(s) in the settlements, {hours} h without funding "
        f"({settlements} settlement(s) missing), the longest {_iso(int(funding.ts[k - 1]))} .. "
        f"{_iso(int(funding.ts[k]))}: no funding is paid or received there (a missing "
        "settlement is not charged at any rate, none is invented; the settlement after a hole "
        "is charged its own rate, which covers its own interval)"
    )


def _decision_source(
    symbol: str,
    trade_tfs: Sequence[str],
    fill: _HoleFiller,
    tf_ms: int,
    start: int | None,
    end: int | None,
    warmup: int,
) -> tuple[Candles, str]:
    """The candles to aggregate into decision candles: ``last`` when it holds the warm-up
    before ``start``, else the finest trade file that divides ``tf_ms`` and covers the warm-up
    and the window, on its own or with its holes filled from the other files
    (:class:`_HoleFiller`); ``last`` when none does (the window then starts later, as before).
    With it, when a file holding the warm-up was passed over for its holes, a note that says so
    (the run's start moves for them, not for the data's first candles); "" otherwise."""
    last = fill.last
    if start is None or end is None or warmup <= 0:
        return last, ""
    since = start - warmup * tf_ms

    def holds(c: Candles) -> bool:
        # (filling only mends holes inside a file's span: a file that starts late stays late)
        if covers(c, since, end):
            return True
        return span_ms(c, since, end) >= end - since and covers(fill.filled(c), since, end)

    if holds(last):
        return last, ""
    holed: Candles | None = None  # the finest file that spans the warm-up but has holes
    for tf in trade_tfs:  # finest first
        step = parse_timeframe(tf)
        if step <= last.tf_ms or tf_ms % step != 0:
            continue
        c = fill.load(tf)
        if holds(c):
            return c, ""
        if holed is None and span_ms(c, since, end) >= end - since:
            holed = c
    if holed is None:
        return last, ""
    # the file's own holes, as its rows show them (the ones no other file fills among them)
    gap = longest_gap(holed, since, end)
    missing = missing_ms(holed, since, end)
    longest = f", the longest {_iso(gap[0])} .. {_iso(gap[1])}" if gap is not None else ""
    first = int(last.ts[0]) + (-int(last.ts[0])) % tf_ms  # its first whole decision candle
    return last, (
        f"{symbol} decisions: {format_timeframe(tf_ms)} made of the "
        f"{format_timeframe(last.tf_ms)} file, which holds the {warmup} candles of warm-up only "
        f"from {_iso(first + warmup * tf_ms)}: the {format_timeframe(holed.tf_ms)} file "
        f"({holed.source}), which holds them before the window, misses "
        f"{missing / 3_600_000:.1f} h of {_iso(since)} .. {_iso(end)}{longest}, not all of it "
        "in another file"
    )


class _HoleFiller:
    """Decision candles with their holes filled from the other trade files that make them.

    A download that skipped two hours of the hourly file while the 5-minute file holds them is
    no hole in the market: left in the decision candles, it cuts every volatility window through
    it (they never span a gap) and the policy decides nothing for a window's length after it (a
    week of 1h candles), or it disqualifies the file that holds the warm-up and moves the run's
    start by that week. Each bucket missing from the candles, inside their span, is taken from
    the other files resampled to the decision timeframe (the same rule as
    :func:`_decision_candles`: kept with at most one in :data:`MISSING_SHARE` of its candles
    missing), the chosen last-trade file first (loaded already), then finest first."""

    def __init__(
        self, inventory: DataInventory, symbol: str, tf_ms: int, last: Candles, tfs: list[str]
    ) -> None:
        self.inventory = inventory
        self.symbol = symbol
        self.tf_ms = tf_ms
        self.last = last
        makers = [t for t in tfs if tf_ms % parse_timeframe(t) == 0]  # finest first
        self.makers = sorted(makers, key=lambda t: parse_timeframe(t) != last.tf_ms)
        self._files: dict[str, Candles] = {}
        self._made: dict[str, Candles] = {}
        self._filled: dict[int, tuple[Candles, Candles, str]] = {}

    def loaded(self) -> list[Candles]:
        """The trade files read so far, ``last`` apart."""
        return list(self._files.values())

    def load(self, tf: str) -> Candles:
        """The trade file of timeframe ``tf`` (``last`` for its own)."""
        if parse_timeframe(tf) == self.last.tf_ms:
            return self.last
        c = self._files.get(tf)
        if c is None:
            c = self._files[tf] = self.inventory.load_candles(self.symbol, tf)
        return c

    def made(self, tf: str) -> Candles:
        """The ``tf`` file at the decision timeframe."""
        c = self._made.get(tf)
        if c is None:
            raw = self.load(tf)
            per_bucket = self.tf_ms // raw.tf_ms
            c = (
                raw
                if per_bucket == 1
                else raw.resample(self.tf_ms, missing_ok=per_bucket // MISSING_SHARE)
            )
            self._made[tf] = c
        return c

    def filled(self, c: Candles) -> Candles:
        """``c``'s decision candles (``c`` resampled) with their holes filled."""
        return self.fill(c)[0]

    def fill(self, c: Candles, decision: Candles | None = None) -> tuple[Candles, str]:
        """``decision`` (else ``c`` at the decision timeframe, as :meth:`made` makes it) with
        the buckets missing inside its span taken from the other files; a note when some were
        ("" when none)."""
        known = self._filled.get(id(c))
        if decision is None and known is not None and known[0] is c:
            return known[1], known[2]
        tf = next(t for t in self.makers if parse_timeframe(t) == c.tf_ms)
        base = decision if decision is not None else self.made(tf)
        merged, holes = base, base.gaps()
        taken: list[tuple[str, IntArray]] = []
        for other in self.makers:
            if not holes:
                break
            if other == tf:
                continue
            add = self.made(other)
            a = np.array([h[0] for h in holes], dtype=np.int64)
            b = np.array([h[1] for h in holes], dtype=np.int64)
            k = np.searchsorted(a, add.ts, side="right") - 1
            inside = (k >= 0) & (add.ts < b[np.maximum(k, 0)])
            if inside.any():
                merged = _merged(merged, add, inside)
                taken.append((other, add.ts[inside]))
                holes = merged.gaps()
        note = self._said(base, tf, taken) if taken else ""
        if decision is None:
            self._filled[id(c)] = (c, merged, note)
        return merged, note

    def _said(self, base: Candles, tf: str, taken: list[tuple[str, IntArray]]) -> str:
        at = np.concatenate([ts for _, ts in taken])
        a, b = max(
            (h for h in base.gaps() if ((at >= h[0]) & (at < h[1])).any()),
            key=lambda h: h[1] - h[0],
        )
        decision_tf = format_timeframe(self.tf_ms)
        what = (
            f"the {tf} file" if tf == decision_tf else f"the {decision_tf} candles of the {tf} file"
        )
        made = " and ".join(f"{len(ts)} from the {t} file" for t, ts in taken)
        return (
            f"{self.symbol} decisions: {len(at)} {decision_tf} candle(s) in hole(s) of {what} "
            f"made of other files ({made}; the same rule as resampled candles), the longest "
            f"hole {_iso(a)} .. {_iso(b)}: left as holes, each would have left the policy "
            "without a full window for a window's length after it"
        )


def _merged(base: Candles, add: Candles, take: npt.NDArray[np.bool_]) -> Candles:
    """``base`` with ``add``'s candles of ``take`` (none of them in ``base``), in time order."""
    ts = np.concatenate([base.ts, add.ts[take]])
    order = np.argsort(ts, kind="stable")

    def joined(x: FloatArray, y: FloatArray) -> FloatArray:
        return np.concatenate([x, y[take]])[order]

    return Candles(
        ts[order],
        joined(base.open, add.open),
        joined(base.high, add.high),
        joined(base.low, add.low),
        joined(base.close, add.close),
        joined(base.volume, add.volume),
        base.tf_ms,
        base.symbol,
        base.kind,
        f"{base.source}, holes from {add.source}",
    )


def _decisions(
    inventory: DataInventory,
    symbol: str,
    decision_tf: str,
    last: Candles,
    window: tuple[int | None, int | None],
    warmup: int,
    notes: list[str],
) -> tuple[Candles, str]:
    """The decision candles: ``last`` when they are of the decision timeframe, else the
    decision timeframe's own file when it covers as much, else resampled (see
    :func:`load_history`); either with its holes filled from the other files that make them
    (:class:`_HoleFiller`). A choice worth saying is appended to ``notes``; with the candles,
    why they start later than a file holding the warm-up ("" when they do not)."""
    tf_ms = parse_timeframe(decision_tf)
    if tf_ms == last.tf_ms:
        return last, ""
    trade_tfs = inventory.trade_timeframes(symbol)
    fill = _HoleFiller(inventory, symbol, tf_ms, last, trade_tfs)
    made = _decisions_of(fill, symbol, decision_tf, trade_tfs, window, warmup, notes)
    # Every other trade file read for them (their source, the files their holes were filled
    # from, a file passed over) holds the trade file's contract, or none is used.
    for other in fill.loaded():
        check_same_contract(other, last)
    return made


def _decisions_of(
    fill: _HoleFiller,
    symbol: str,
    decision_tf: str,
    trade_tfs: list[str],
    window: tuple[int | None, int | None],
    warmup: int,
    notes: list[str],
) -> tuple[Candles, str]:
    """:func:`_decisions` when they are made of other candles than ``fill.last``."""
    last, tf_ms = fill.last, fill.tf_ms
    start, end = window
    if decision_tf in trade_tfs:
        own, said = fill.fill(fill.load(decision_tf))
        if _covers_as_much(own, last, start, end):
            if said:
                notes.append(said)
            return own, ""
    # the chosen file's timeframe divides the decision timeframe
    source, late = _decision_source(symbol, trade_tfs, fill, tf_ms, start, end, warmup)
    if source is not last:
        notes.append(
            f"{symbol} decisions: {decision_tf} resampled from "
            f"{format_timeframe(source.tf_ms)}, the finest file that also holds the "
            f"{warmup} candles of warm-up before the window"
        )
    if late:
        notes.append(late)
    decision, said = fill.fill(source, _decision_candles(symbol, source, tf_ms, notes))
    if said:
        notes.append(said)
    return decision, late


def _decision_gaps(
    symbol: str, decision: Candles, warmup: int, start: int | None, end: int | None
) -> str:
    """A note for the gaps in the decision candles inside the window: a window never spans a
    gap, so after each the policy has no full window and decides nothing (its position held,
    protected) until ``warmup`` candles have closed after it, a week of 1h candles after an
    hour missing ("" when there is no such gap, or no warm-up is known)."""
    tf = decision.tf_ms
    if warmup <= 0 or len(decision) <= warmup:
        return ""
    lo = start if start is not None else int(decision.ts[warmup])
    hi = end if end is not None else int(decision.ts[-1]) + tf
    spans: list[list[int]] = []  # [from, until) without a decision, merged
    for a, b in decision.gaps():
        a, b = max(a, lo), min(b + warmup * tf, hi)
        if a >= b:
            continue
        if spans and a <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], b)
        else:
            spans.append([a, b])
    if not spans:
        return ""
    hours = sum(b - a for a, b in spans) / 3_600_000
    a, b = max(spans, key=lambda ab: ab[1] - ab[0])
    return (
        f"{symbol} decisions: {len(spans)} stretch(es) without a decision after a gap in the "
        f"{format_timeframe(tf)} decision candles (a window never spans a gap: the policy "
        f"decides again once {warmup} candles have closed after it; the position is held, "
        f"protected), {hours:.0f} h in all, the longest {_iso(a)} .. {_iso(b)}"
    )


MISSING_SHARE = 10
"""A decision candle aggregated from finer candles is kept when at most one in this many of
them is missing (an hour of 1m candles missing up to 6 minutes, of 5m candles one)."""


def _decision_candles(symbol: str, source: Candles, tf_ms: int, notes: list[str]) -> Candles:
    """``source`` aggregated to ``tf_ms``. A bucket missing a few of its candles (a minute of
    exchange downtime, a download that skipped one) is kept, made of those present: dropped, it
    would cut every volatility window through it (they never span a gap), and the policy would
    have no full window, so no decision, for a whole window's length after it (a week of 1h
    candles for one missing minute). A bucket missing more is dropped, as before. Said in
    ``notes`` when a bucket was kept so."""
    per_bucket = tf_ms // source.tf_ms
    decision = source.resample(tf_ms, missing_ok=per_bucket // MISSING_SHARE)
    kept = len(decision) - len(source.resample(tf_ms)) if per_bucket >= MISSING_SHARE else 0
    if kept:
        notes.append(
            f"{symbol} decisions: {kept} {format_timeframe(tf_ms)} candle(s) made of the "
            f"{format_timeframe(source.tf_ms)} candles present, a few missing (at most one in "
            f"{MISSING_SHARE}; dropped, each would have left the policy without a full window)"
        )
    return decision


def _covers_as_much(c: Candles, ref: Candles, start: int | None, end: int | None) -> bool:
    lo = start if start is not None else int(ref.ts[0])
    hi = end if end is not None else int(ref.ts[-1]) + ref.tf_ms
    return covered_ms(c, lo, hi) >= covered_ms(ref, lo, hi)


def load_histories(
    inventory: DataInventory,
    symbols: Sequence[str],
    decision_tf: str,
    trigger_source: Literal["auto", "mark", "last"] = "auto",
    window: tuple[int | None, int | None] = (None, None),
    warmup: int = 0,
) -> dict[str, ContractHistory]:
    """:func:`load_history` for several contracts, two files at a time (decompression and
    parsing release the GIL for part of the work). The result is in ``symbols`` order."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        loaded = pool.map(
            lambda s: load_history(inventory, s, decision_tf, trigger_source, window, warmup),
            symbols,
        )
        return dict(zip(symbols, loaded, strict=True))


class TradeQuote(NamedTuple):
    """A last price for market orders (:meth:`HistoricalMarket.trade_quote`): the close of the
    candle (trade, else mark) that closed at ``as_of_ms``, and until when the contract has a
    price (from then on a hole in every one of its price series: none within one candle)."""

    price: Decimal
    as_of_ms: int
    until_ms: int


# (history, spec, volatility, ATR, mean volume): the precomputed statistics a market last read.
_StatsOf = tuple[ContractHistory, StatisticsSpec, FloatArray, FloatArray, FloatArray]


class HistoricalMarket:
    """Implements :class:`bot.ports.market.MarketDataPort` over loaded history."""

    def __init__(self, contracts: dict[str, ContractHistory]) -> None:
        self.contracts = contracts
        # The funding view changes only when a settlement passes: cache it per settlement index.
        self._funding_cache: dict[tuple[str, int, int], FundingInfo] = {}
        self._spec: StatisticsSpec | None = None
        # Index lookups per contract and series: each tick asks a little later than the last.
        self._decision_at: dict[str, TimeCursor] = {}
        self._last_at: dict[str, TimeCursor] = {}
        self._trigger_at: dict[str, TimeCursor] = {}
        self._funding_at_ms: dict[str, TimeCursor] = {}
        # Per contract the history and spec of the last statistics read, and their arrays.
        self._stats_of: dict[str, _StatsOf] = {}
        # The last price answered per contract, by index into its last-trade candles: the replay
        # and the engine both read it at every tick.
        self._last_answer: dict[str, tuple[Candles, int, tuple[Decimal, int]]] = {}
        # The last-trade closes as decimals per contract (shared with the trigger series when
        # the trigger bars are the last-trade candles).
        self._last_closes: dict[str, DecimalColumn] = {}

    def _closes(self, symbol: str, c: Candles) -> DecimalColumn:
        closes = self._last_closes.get(symbol)
        if closes is None or closes.values is not c.close:
            closes = self._last_closes[symbol] = DecimalColumn(c.close)
        return closes

    @staticmethod
    def _new_cursor(
        cursors: dict[str, TimeCursor], symbol: str, ts: IntArray, step: int
    ) -> TimeCursor:
        """A cursor on ``ts`` for ``symbol`` (first use, or the history was replaced)."""
        cursor = cursors[symbol] = TimeCursor(ts, step)
        return cursor

    def precompute(self, spec: StatisticsSpec) -> None:
        """Estimate ``spec``'s volatility, ATR and mean volume for every full window of every
        contract's decision candles at once (vectorised); :meth:`closed_candles` then hands each
        window its values (:class:`WindowStatistics`) and the engine looks them up instead of
        estimating. Windows cut short by a gap or the start of the history are estimated by the
        engine."""
        self._spec = spec
        for h in self.contracts.values():
            if spec in h.statistics:
                continue
            c = h.decision
            vol = trailing_estimates(
                spec.estimator,
                c.open,
                c.high,
                c.low,
                c.close,
                spec.window,
                periods_per_year(c.tf_ms),
                spec.lam,
            )
            atr = trailing_atr(c.high, c.low, c.close, spec.atr_window, spec.span)
            h.statistics[spec] = (vol, atr, trailing_mean(c.volume, spec.window))

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        c = self.contracts[symbol].decision
        if c.tf_ms != tf_ms:
            raise ValueError(f"{symbol}: decision candles are {c.tf_ms} ms, asked {tf_ms}")
        cursor = self._decision_at.get(symbol)
        if cursor is None or cursor.ts is not c.ts:
            cursor = self._new_cursor(self._decision_at, symbol, c.ts, tf_ms)
        end = cursor.right(now_ms - tf_ms)
        start = max(0, end - count)
        gap = None
        if end > 0:
            # Never let a window span a gap: returns across it would be invented.
            segment = int(self.contracts[symbol].segment_start[end - 1])
            if segment > start:
                start = segment
                gap = (int(c.ts[segment - 1]) + tf_ms, int(c.ts[segment]))
        return CandleWindow(
            c.ts[start:end],
            c.open[start:end],
            c.high[start:end],
            c.low[start:end],
            c.close[start:end],
            tf_ms,
            self._statistics(symbol, count, start, end),
            c.volume[start:end],
            gap,
        )

    def _statistics(self, symbol: str, count: int, start: int, end: int) -> WindowStatistics | None:
        spec = self._spec
        if spec is None or count != spec.span or end - start != count:
            return None
        h = self.contracts[symbol]
        known = self._stats_of.get(symbol)
        if known is not None and known[0] is h and known[1] is spec:
            vol, atr, traded = known[2], known[3], known[4]
        else:
            vol, atr, traded = h.statistics[spec]
            self._stats_of[symbol] = (h, spec, vol, atr, traded)
        v, a = float(vol[end]), float(atr[end])
        if v != v or a != a:  # NaN: not enough candles before this window
            return None
        return WindowStatistics(spec, v, a, float(traded[end]))

    def last_price(self, symbol: str, now_ms: int) -> tuple[Decimal, int] | None:
        c = self.contracts[symbol].last
        cursor = self._last_at.get(symbol)
        if cursor is None or cursor.ts is not c.ts:
            cursor = self._new_cursor(self._last_at, symbol, c.ts, c.tf_ms)
        i = cursor.right(now_ms - c.tf_ms) - 1
        if i < 0:
            return None
        known = self._last_answer.get(symbol)
        if known is not None and known[1] == i and known[0] is c:
            return known[2]
        answer = self._closes(symbol, c)[i], int(c.ts[i]) + c.tf_ms
        self._last_answer[symbol] = (c, i, answer)
        return answer

    def trade_price(self, symbol: str, now_ms: int, mark: Decimal | None) -> Decimal | None:
        """The price of :meth:`trade_quote` (None before the first candle)."""
        quote = self.trade_quote(symbol, now_ms, mark)
        return quote.price if quote is not None else None

    def trade_quote(self, symbol: str, now_ms: int, mark: Decimal | None) -> TradeQuote | None:
        """The last price a market order sent at ``now_ms`` fills from: the close of the
        last-trade candle closed then. Where that candle is missing (a hole in the trade data
        while the mark candles go on), ``mark``, the mark of that moment, not a close hours or
        days old, if a mark bar closed after the last trade candle did (else that close is the
        newer price). None before the first candle.

        With it, until when there is a price (:attr:`TradeQuote.until_ms`): while the trade
        candles or the trigger (mark) bars closed within one candle of their own, and one of
        the two series has the bar that spans the moment just before ``now_ms``. Otherwise
        ``now_ms`` lies in a hole of every price series of the contract (a venue in maintenance,
        a download that skipped a day), or just at its end, with the last price from before it:
        no trade is known to fill a market order at (``until_ms`` is then ``now_ms`` at most)."""
        last = self.last_price(symbol, now_ms)
        if last is None:
            return None
        price, closed_at = last
        h = self.contracts[symbol]
        tf = h.last.tf_ms
        if closed_at == now_ms:  # the candle closing now (every tick on whole data)
            return TradeQuote(price, closed_at, closed_at + tf)
        as_of, until = closed_at, closed_at + tf
        if closed_at <= now_ms - tf:  # a hole in the trade candles
            marked, mark_tf = self._mark_closed_at(symbol, now_ms)
            until = max(until, marked + mark_tf)
            # Only a mark newer than that close: an hourly mark bar still open over a few
            # minutes of missing trade candles in a crash is the price of up to an hour before,
            # and a market order filled there would leave the crash at its start.
            if mark is not None and marked > closed_at:
                price, as_of = mark, marked
        if not (_spans(h.last, now_ms) or _spans(h.trigger, now_ms)):
            until = min(until, now_ms)
        return TradeQuote(price, as_of, until)

    def closed_candle(self, symbol: str, t: int) -> tuple[Decimal, Decimal] | None:
        """The range ((high - low) / open) and volume of ``symbol``'s last-trade candle closed
        at ``t`` (None: none has, or its open is not a price): what a market order sent at
        ``t`` pays its impact on (:mod:`bot.sim.slippage`)."""
        c = self.contracts[symbol].last
        i = int(c.ts.searchsorted(t - c.tf_ms, side="right")) - 1
        if i < 0 or c.open[i] <= 0:
            return None
        return to_decimal((c.high[i] - c.low[i]) / c.open[i]), to_decimal(c.volume[i])

    def _mark_closed_at(self, symbol: str, now_ms: int) -> tuple[int, int]:
        """When the latest trigger bar closed by ``now_ms`` closed (0: none has), and the
        trigger bars' length."""
        t = self.contracts[symbol].trigger
        cursor = self._trigger_at.get(symbol)
        if cursor is None or cursor.ts is not t.ts:
            cursor = self._new_cursor(self._trigger_at, symbol, t.ts, t.tf_ms)
        i = cursor.right(now_ms - t.tf_ms) - 1
        return (int(t.ts[i]) + t.tf_ms if i >= 0 else 0), t.tf_ms

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        f = self.contracts[symbol].funding
        if f is None or len(f.ts) == 0:
            return FundingInfo(ZERO, Decimal(8), None)
        cursor = self._funding_at_ms.get(symbol)
        if cursor is None or cursor.ts is not f.ts:
            cursor = self._new_cursor(self._funding_at_ms, symbol, f.ts, _FUNDING_STEP)
        i = cursor.right(now_ms)
        key = (symbol, i, lookback)
        cached = self._funding_cache.get(key)
        if cached is not None:
            return cached
        info = self._funding_at(f, i, lookback)
        self._funding_cache[key] = info
        return info

    @staticmethod
    def _funding_at(f: FundingSeries, i: int, lookback: int) -> FundingInfo:
        # the one reading of settled rates, shared with paper and live (ccxt_market)
        return settled_mean(f, i, lookback)

    def trigger_series(self) -> dict[str, TriggerSeries]:
        out = {}
        for sym, h in self.contracts.items():
            t = h.trigger
            closes = self._closes(sym, h.last) if t.close is h.last.close else None
            out[sym] = TriggerSeries(
                t.ts,
                t.open,
                t.high,
                t.low,
                t.close,
                t.tf_ms,
                t.kind,
                closes=closes,
                last_bars=_last_beside(t, h.last),
            )
        return out

    def funding_tapes(self) -> dict[str, FundingTape]:
        return {
            sym: FundingTape(h.funding.ts, h.funding.rate)
            for sym, h in self.contracts.items()
            if h.funding is not None
        }


def set_lasts(
    exchange: SimulatedExchange,
    market: HistoricalMarket,
    symbols: Sequence[str],
    t: int,
    candle: ClosedCandle,
) -> None:
    """Hand ``exchange`` the last prices at ``t`` (:meth:`HistoricalMarket.trade_quote`: the
    mark across a hole in the trade candles; until when each is a price, past which the
    exchange refuses market orders), and (data-driven slippage) the candle market orders pay
    for. The dry-run replay calls it at every decision and guard, the paper replay feed at
    every catch-up: the same recorded data fills the same orders at the same prices."""
    marks = exchange.marks
    for sym in symbols:
        quote = market.trade_quote(sym, t, marks.get(sym))
        if quote is not None:
            exchange.set_last(sym, quote.price, as_of_ms=quote.as_of_ms, until_ms=quote.until_ms)
    if exchange.slippage_model.data_driven:
        # Market orders pay for the candle that just closed (its range and volume), looked up
        # only when an order fills.
        candle.t = t
        exchange.candle_lookup = candle


class ClosedCandle:
    """A simulated exchange's ``candle_lookup`` over recorded history: the range and volume of
    the last-trade candle closed at ``t`` (:meth:`HistoricalMarket.closed_candle`). ``t`` is
    the time of the last decision or guard: the dry-run replay and the paper replay feed move
    it there, so market orders and the stops triggered until the next one pay for the same
    candle in both."""

    __slots__ = ("market", "t")

    def __init__(self, market: HistoricalMarket, t: int) -> None:
        self.market = market
        self.t = t

    def __call__(self, symbol: str) -> tuple[Decimal, Decimal] | None:
        return self.market.closed_candle(symbol, self.t)


def _spans(c: Candles, now_ms: int) -> bool:
    """Whether ``c`` has the bar that spans the moment just before ``now_ms`` (the one that
    closes then, or one still open): false inside a hole of ``c`` and at its end."""
    i = int(c.ts.searchsorted(now_ms, side="left")) - 1  # the last bar open before now
    return i >= 0 and int(c.ts[i]) + c.tf_ms >= now_ms


def _last_beside(trigger: Candles, last: Candles) -> FloatArray | None:
    """Mark bars: the last-trade candle over the same time beside each one (open, high, low;
    NaN where there is none), what a triggered stop fills against. Finer last-trade candles
    are aggregated over each mark bar, from those present (an hour with minutes missing in a
    crash is still the hour the book traded in): a stop triggered on an hourly mark bar fills
    against that hour's last-price wick, not at its trigger. None when the triggers are the
    last-trade candles, or the last-trade candles are coarser or off the mark bars' grid."""
    if trigger is last or len(last) == 0 or len(trigger) == 0:
        return None
    if trigger.tf_ms < last.tf_ms or trigger.tf_ms % last.tf_ms != 0:
        return None
    hours = last.resample(trigger.tf_ms, partial=True)  # (mark bars lie on the epoch grid)
    out = np.full((len(trigger), 3), np.nan)
    if len(hours.ts) == 0:
        return out
    i = np.minimum(np.searchsorted(hours.ts, trigger.ts), len(hours.ts) - 1)
    same = hours.ts[i] == trigger.ts
    out[same, 0] = hours.open[i[same]]
    out[same, 1] = hours.high[i[same]]
    out[same, 2] = hours.low[i[same]]
    return out


def _day_ms(d: date) -> int:
    return datetime_to_ms(datetime.combine(d, time(0), tzinfo=UTC))


def data_end(h: ContractHistory) -> int:
    """Where the contract's data ends (ms): the earlier end of its trigger candles and of its
    last-trade candles. Past the last trade candle the contract cannot be decided on nor
    traded at a price of its own, even where its mark candles go on."""
    return min(int(h.trigger.ts[-1]) + h.trigger.tf_ms, int(h.last.ts[-1]) + h.last.tf_ms)


def simulation_window(
    histories: dict[str, ContractHistory], policy: Policy, config: BotConfig
) -> tuple[int, int]:
    """[start, end) in ms: the configured dates, or where every contract has warm-up data."""
    tf = parse_timeframe(policy.timeframe)
    warm = candles_needed(policy)
    short = [f"{s} ({len(h.decision)})" for s, h in histories.items() if len(h.decision) <= warm]
    if short:
        # Not one decision with a full warm-up: refused, never a run of one tick on less.
        key, window = longest_window(policy)
        raise DataError(
            f"no simulation window: the policy {policy.name!r} needs {warm} {policy.timeframe} "
            f"candles of warm-up before its first decision ({key} = {window}) and the data "
            f"holds only {', '.join(short)}"
        )
    first = max(max(_warmed_up(h, warm), int(h.trigger.ts[0])) for h in histories.values())
    last = min(data_end(h) for h in histories.values())
    sim = config.simulation
    start = _day_ms(sim.start) if sim.start is not None else first
    end = _day_ms(sim.end + timedelta(days=1)) if sim.end is not None else last
    start = max(start, first)
    end = min(end, last)
    start += (-start) % tf
    if end - start < tf:
        raise DataError(
            f"no simulation window: data for {', '.join(histories)} with {warm} {policy.timeframe} "
            f"candles of warm-up covers {_iso(first)} .. {_iso(last)}, asked "
            f"{sim.start or 'start'} .. {sim.end or 'end'}" + _mark_limits(histories, warm)
        )
    return start, end


def late_starts(histories: dict[str, ContractHistory], warm: int, start: int) -> list[str]:
    """Why the contracts whose warm-up ends at ``start`` or later hold it that late, where a
    file that holds it earlier was passed over for its holes (:attr:`ContractHistory.
    late_start`); empty when the data's first candles are the reason."""
    return [
        h.late_start
        for h in histories.values()
        if h.late_start and len(h.decision) and _warmed_up(h, warm) >= start
    ]


def _warmed_up(h: ContractHistory, warm: int) -> int:
    """The first decision candle with ``warm`` candles of warm-up before it (or the last)."""
    return int(h.decision.ts[min(warm, len(h.decision) - 1)])


TRIGGER_ON_TRADES = (
    '[simulation] trigger_source = "last" triggers the stops on the last-trade candles instead'
)
"""The way out of a window a mark file limits, said wherever one does."""


def _on_mark(h: ContractHistory) -> bool:
    """Whether ``h``'s stops trigger on mark candles of their own span (not the trade candles,
    nor the trade candles held within the mark's range)."""
    return h.trigger is not h.last and not h.trigger_on_trades and h.trigger.kind == "mark"


def mark_candles(h: ContractHistory) -> str:
    """``h``'s mark candles and their span, as the notes name them."""
    mark_start, mark_end = int(h.trigger.ts[0]), int(h.trigger.ts[-1]) + h.trigger.tf_ms
    return (
        f"{h.symbol}'s mark candles ({format_timeframe(h.trigger.tf_ms)}, {_iso(mark_start)} .. "
        f"{_iso(mark_end)})"
    )


def mark_ends_first(h: ContractHistory) -> bool:
    """Whether :func:`data_end` is where ``h``'s mark candles end, before its trade candles:
    the stops trigger on the mark ("auto"), so the run cannot go on without it."""
    trade_end = int(h.last.ts[-1]) + h.last.tf_ms
    return _on_mark(h) and int(h.trigger.ts[-1]) + h.trigger.tf_ms < trade_end


def late_marks(histories: dict[str, ContractHistory], warm: int, start: int, tf: int) -> list[str]:
    """The mark candles that start after their contract's warm-up and hold the run's first
    decision tick ``start`` (on the ``tf`` grid) that late; empty when none does."""
    return [
        f"{mark_candles(h)} start after its warm-up"
        for h in histories.values()
        if _on_mark(h)
        and int(h.trigger.ts[0]) > _warmed_up(h, warm)
        and int(h.trigger.ts[0]) + (-int(h.trigger.ts[0])) % tf >= start
    ]


def _mark_limits(histories: dict[str, ContractHistory], warm: int) -> str:
    """What to say when mark candles, not the trade candles, keep the window out: the stops
    trigger on the mark where the data has mark candles ("auto"), so a mark file that starts
    later or ends earlier than the trade candles limits the run ("" when none does)."""
    said = []
    for h in histories.values():
        if not _on_mark(h):
            continue  # (the trade candles, or the trade candles held within the mark's range)
        ready = _warmed_up(h, warm)
        trade_end = int(h.last.ts[-1]) + h.last.tf_ms
        mark_start, mark_end = int(h.trigger.ts[0]), int(h.trigger.ts[-1]) + h.trigger.tf_ms
        if mark_start > ready or mark_end < trade_end:
            said.append(
                f"{mark_candles(h)} are shorter than its last-trade candles "
                f"({format_timeframe(h.last.tf_ms)}, {_iso(int(h.last.ts[0]))} .. "
                f"{_iso(trade_end)})"
            )
    if not said:
        return ""
    return "; " + "; ".join(said) + "; " + TRIGGER_ON_TRADES


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def requested_window(config: BotConfig) -> tuple[int | None, int | None]:
    """[start, end) in ms of the configured simulation dates (None where not set): the window
    the data files are chosen to cover (:mod:`bot.marketdata.coverage`)."""
    sim = config.simulation
    return (
        _day_ms(sim.start) if sim.start is not None else None,
        _day_ms(sim.end + timedelta(days=1)) if sim.end is not None else None,
    )
