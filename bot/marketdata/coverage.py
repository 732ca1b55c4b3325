"""Pick, per contract and series, the finest timeframe whose file covers the requested window.

A data directory often holds a short 1m file beside a long 1h file. The simulator and the replay
take the finest candles that cover the window they were asked for; a finer file that covers less
is passed over (and the choice is said), never an error. When no file covers the whole window,
the one covering most of it wins (finest on a tie) and the note says what is missing.

Coverage is the time the candles really cover, gaps inside the file included: a 1m file that
starts before the window and ends after it but misses twenty months in the middle does not cover
it (merged downloads often look like that), and a simulation on it would sit on stale prices
for those months. A finer file still wins over a coarser one that covers more when it misses
at most :data:`SLACK_MS` (or :data:`SLACK_FRACTION` of the window) more: real files miss a few
candles of exchange downtime, and that is no reason to give up the finer one. The note names the
chosen file's missing time and its longest gap inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt
from loguru import logger

from bot.marketdata.candles import Candles


class CandleFiles(Protocol):
    """Where the candles come from (a :class:`bot.marketdata.files.DataInventory`)."""

    def load_candles(self, symbol: str, tf: str, kind: str = "trade") -> Candles: ...


@dataclass(frozen=True, slots=True)
class Choice:
    candles: Candles
    timeframe: str
    note: str  # human-readable: what was chosen and why


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


# A file with gaps inside the window totalling at most this much still covers it; a finer file
# that covers less than the best wins if it misses at most this much more.
SLACK_MS = 3_600_000
SLACK_FRACTION = 0.001


def _inside(c: Candles, start: int, end: int) -> npt.NDArray[np.int64]:
    """Open times of the candles that overlap [start, end) (a view, found by binary search)."""
    lo = int(np.searchsorted(c.ts, start - c.tf_ms, side="right"))  # first ending after start
    hi = int(np.searchsorted(c.ts, end, side="left"))  # candles opening before end
    return c.ts[lo:hi]


def covered_ms(c: Candles, start: int, end: int) -> int:
    """Milliseconds of [start, end) that the file's candles cover (its gaps are not covered)."""
    if len(c) == 0 or end <= start:
        return 0
    tf = c.tf_ms
    inside = _inside(c, start, end)
    if len(inside) == 0:
        return 0
    # Candles are on their grid and strictly increasing (checked when loaded): they never overlap.
    whole = len(inside) * tf
    head = max(0, start - int(inside[0]))  # the part of the first candle before the window
    tail = max(0, int(inside[-1]) + tf - end)  # the part of the last candle after it
    return whole - head - tail


def missing_ms(c: Candles, start: int, end: int) -> int:
    """Milliseconds of [start, end) that no candle of the file covers."""
    return max(end - start, 0) - covered_ms(c, start, end)


def longest_gap(c: Candles, start: int, end: int) -> tuple[int, int] | None:
    """The longest stretch of [start, end) no candle covers, as (from, to); ``None`` if none."""
    if len(c) == 0:
        return (start, end) if end > start else None
    inside = _inside(c, start, end)
    if len(inside) == 0:
        return (start, end)
    # Uncovered stretches: before the first candle, between candles, after the last one.
    starts = np.concatenate(([start], inside + c.tf_ms))
    ends = np.concatenate((inside, [end]))
    lengths = ends - starts
    k = int(np.argmax(lengths))
    if lengths[k] <= 0:
        return None
    return int(starts[k]), int(ends[k])


def span_ms(c: Candles, start: int, end: int) -> int:
    """Milliseconds of [start, end) inside the file's span (first open .. last close)."""
    if len(c) == 0:
        return 0
    lo, hi = max(start, int(c.ts[0])), min(end, int(c.ts[-1]) + c.tf_ms)
    return max(0, hi - lo)


def _slack(need: int) -> int:
    return max(SLACK_MS, int(need * SLACK_FRACTION))


def covers(c: Candles, start: int, end: int) -> bool:
    """The file spans the window and its gaps inside it total at most the slack."""
    need = end - start
    span = span_ms(c, start, end)
    return span >= need and span - covered_ms(c, start, end) <= _slack(need)


def choose(
    inventory: CandleFiles,
    symbol: str,
    kind: str,
    timeframes: list[str],
    start_ms: int | None,
    end_ms: int | None,
) -> Choice:
    """The finest of ``timeframes`` (shortest first) whose ``kind`` file covers the window.

    ``start_ms``/``end_ms`` None mean "as far as any file goes" (the widest span on offer).
    """
    loaded: list[tuple[str, Candles]] = []
    for tf in timeframes:
        loaded.append((tf, inventory.load_candles(symbol, tf, kind)))
        if start_ms is not None and end_ms is not None:
            c = loaded[-1][1]
            if covers(c, start_ms, end_ms):
                why = "covers the window" if len(loaded) > 1 or len(timeframes) > 1 else "only file"
                return _said(symbol, kind, tf, c, loaded[:-1], why, start_ms, end_ms)
    start = start_ms if start_ms is not None else min(int(c.ts[0]) for _, c in loaded)
    end = end_ms if end_ms is not None else max(int(c.ts[-1]) + c.tf_ms for _, c in loaded)
    need = max(end - start, 0)
    covered = [covered_ms(c, start, end) for _, c in loaded]
    best = max(covered)
    for i, (tf, c) in enumerate(loaded):  # finest first
        if covers(c, start, end):
            return _said(symbol, kind, tf, c, loaded[:i], "covers the window", start, end)
    best_i = next(i for i in range(len(loaded)) if covered[i] >= best - _slack(need))
    tf, chosen = loaded[best_i]
    return _said(
        symbol,
        kind,
        tf,
        chosen,
        loaded[:best_i],
        f"covers most of {_iso(start)} .. {_iso(end)} (no file covers all of it)",
        start,
        end,
    )


def _said(
    symbol: str,
    kind: str,
    tf: str,
    chosen: Candles,
    finer: list[tuple[str, Candles]],
    why: str,
    start: int,
    end: int,
) -> Choice:
    span = f"{_iso(int(chosen.ts[0]))} .. {_iso(int(chosen.ts[-1]) + chosen.tf_ms)}"
    note = f"{symbol} {kind}: {tf} ({span}) {why}"
    missing = missing_ms(chosen, start, end)
    # (the gap scan reads the whole window: only for a file that misses more than a candle)
    gap = longest_gap(chosen, start, end) if missing > chosen.tf_ms else None
    if gap is not None:
        note += (
            f"; {missing / 3_600_000:.1f} h of the window missing, the longest gap "
            f"{_iso(gap[0])} .. {_iso(gap[1])}"
        )
    if finer:
        passed = "; ".join(
            f"{t} ({_iso(int(c.ts[0]))} .. {_iso(int(c.ts[-1]) + c.tf_ms)}, "
            f"{_missing_h(c, start, end)} h of the window missing)"
            for t, c in finer
        )
        note += f"; finer files passed over because they cover less: {passed}"
    logger.info("data selection: {}", note)
    return Choice(chosen, tf, note)


def _missing_h(c: Candles, start: int, end: int) -> str:
    return f"{missing_ms(c, start, end) / 3_600_000:.1f}"
