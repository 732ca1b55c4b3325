"""In-memory candle and funding series (numpy arrays, UTC epoch milliseconds).

Candle timestamps are candle **open** times: a 1h candle stamped 10:00 covers
10:00:00.000-10:59:59.999 and is only known once 11:00 has passed.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from bot.errors import DataError

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

_TF_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TF_RE = re.compile(r"^([1-9][0-9]*)([smhdw])$")
HOUR_MS = 3_600_000
LONGEST_FUNDING_HOURS = 8.0
"""The longest funding interval of the venues the bot trades (Binance and Bybit settle every 8,
4 or 1 hours)."""
FUNDING_HOURS = (4, 2, 1)
"""The venues' funding intervals shorter than :data:`LONGEST_FUNDING_HOURS` (Binance 4 h and
1 h, Bybit also 2 h), longest first."""


VENUE_FUNDING_HOURS = (LONGEST_FUNDING_HOURS, *map(float, FUNDING_HOURS))


def settlement_step(before: float | None, step: float, after: float | None) -> tuple[float, int]:
    """(hours a settlement's rate covers, settlements missing just before it), from the hours
    since the settlement before it (``step``) and the steps before and after that one (None
    at the ends of the data). Times are taken to the minute (the files' stamps are).

    * A step the settlements around it keep (the step before or after is the same) is the
      venue's interval, or a change of it (Binance and Bybit move a contract between 8, 4, 2
      and 1 h, and keep the new interval for many settlements).
    * A step that is a whole multiple k >= 2 of the venue interval before it (else of the one
      after it) is a hole of k - 1 settlements of that interval: 1 h, then 2 h, then 1 h is one
      hourly settlement missing, not a switch to 2 h and back. (At the very end of the data a
      step longer than the ones before it cannot be told from a change of interval: read as a
      hole.)
    * Otherwise a step longer than :data:`LONGEST_FUNDING_HOURS` is a hole of 8-hourly
      settlements, and a shorter whole number of hours that is no venue's interval (3 h, 6 h
      after 4 h) a hole of the longest venue interval it is a multiple of.
    """
    step = _to_minute(step)
    before = _to_minute(before) if before is not None else None
    after = _to_minute(after) if after is not None else None
    if step in VENUE_FUNDING_HOURS and step in (before, after):
        return step, 0
    for around in (before, after):
        if around is not None and around in VENUE_FUNDING_HOURS and around < step:
            k = step / around
            if k.is_integer():
                return around, int(k) - 1
    if step > LONGEST_FUNDING_HOURS:
        return LONGEST_FUNDING_HOURS, max(0, round(step / LONGEST_FUNDING_HOURS) - 1)
    if step.is_integer() and step not in VENUE_FUNDING_HOURS:
        hours = float(next(h for h in FUNDING_HOURS if step % h == 0))
        return hours, int(step / hours) - 1
    return step, 0


def _to_minute(hours: float) -> float:
    return round(hours * 60) / 60


def parse_timeframe(tf: str) -> int:
    """Return the length of a ccxt-style timeframe (``"5m"``, ``"1h"``, ``"8h"``) in ms.

    Months are rejected: they have no fixed length.
    """
    m = _TF_RE.match(tf)
    if m is None:
        raise ValueError(f"unknown timeframe {tf!r}; expected e.g. '1m', '5m', '1h', '8h', '1d'")
    return int(m.group(1)) * _TF_UNITS_MS[m.group(2)]


def format_timeframe(tf_ms: int) -> str:
    """Inverse of :func:`parse_timeframe`, using the largest unit that divides ``tf_ms``."""
    if tf_ms <= 0:
        raise ValueError(f"timeframe must be positive, got {tf_ms} ms")
    for unit, size in sorted(_TF_UNITS_MS.items(), key=lambda kv: -kv[1]):
        if tf_ms % size == 0:
            return f"{tf_ms // size}{unit}"
    raise ValueError(f"timeframe {tf_ms} ms is not a whole number of seconds")


def _check_same_length(owner: str, **arrays: npt.NDArray[np.generic]) -> int:
    lengths = {name: a.shape for name, a in arrays.items()}
    if any(a.ndim != 1 for a in arrays.values()) or len(set(lengths.values())) != 1:
        raise ValueError(f"{owner}: arrays must be 1-D and of equal length, got {lengths}")
    return len(next(iter(arrays.values())))


@dataclass(frozen=True, eq=False)
class Candles:
    """OHLCV candles of one contract and timeframe, sorted by open time, unique, on the grid.

    ``ts``: open time, int64 UTC epoch ms. Prices in quote currency per base unit, ``volume`` in
    base units (0 for mark-price candles). ``kind`` is ``"trade"`` or ``"mark"``. ``source`` is
    where the data came from (a file path), used in messages.
    """

    ts: I64
    open: F64
    high: F64
    low: F64
    close: F64
    volume: F64
    tf_ms: int
    symbol: str
    kind: str
    source: str

    def __post_init__(self) -> None:
        _check_same_length(
            f"Candles({self.source})",
            ts=self.ts,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
        )
        if self.ts.dtype != np.int64:
            raise ValueError(f"Candles({self.source}): ts must be int64 ms, got {self.ts.dtype}")
        if self.kind not in ("trade", "mark"):
            raise ValueError(f"Candles({self.source}): kind must be 'trade' or 'mark'")
        if self.tf_ms <= 0:
            raise ValueError(f"Candles({self.source}): tf_ms must be positive")

    def __len__(self) -> int:
        return len(self.ts)

    def _take(self, sl: slice) -> Candles:
        return Candles(
            ts=self.ts[sl],
            open=self.open[sl],
            high=self.high[sl],
            low=self.low[sl],
            close=self.close[sl],
            volume=self.volume[sl],
            tf_ms=self.tf_ms,
            symbol=self.symbol,
            kind=self.kind,
            source=self.source,
        )

    def slice_time(self, start_ms: int, end_ms: int) -> Candles:
        """Return the candles whose open time is in ``[start_ms, end_ms)`` (views, no copy)."""
        lo = int(np.searchsorted(self.ts, start_ms, side="left"))
        hi = int(np.searchsorted(self.ts, end_ms, side="left"))
        return self._take(slice(lo, max(lo, hi)))

    def index_at_or_before(self, ms: int) -> int | None:
        """Return the index of the last candle **opened** at or before ``ms``, None if none.

        That candle may still be open at ``ms``; for the last candle *closed* by ``ms`` ask
        for ``ms - tf_ms``.
        """
        i = int(np.searchsorted(self.ts, ms, side="right")) - 1
        return i if i >= 0 else None

    def _run_bounds(self) -> tuple[I64, I64]:
        """Indices of the first and last candle of each contiguous run."""
        if len(self.ts) == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty
        breaks = np.flatnonzero(np.diff(self.ts) != self.tf_ms)
        firsts = np.concatenate(([0], breaks + 1)).astype(np.int64)
        lasts = np.concatenate((breaks, [len(self.ts) - 1])).astype(np.int64)
        return firsts, lasts

    def segments(self) -> list[tuple[int, int]]:
        """Contiguous runs as ``(first_open_ms, last_open_ms)`` (both inclusive)."""
        firsts, lasts = self._run_bounds()
        return [(int(self.ts[a]), int(self.ts[b])) for a, b in zip(firsts, lasts, strict=True)]

    def gaps(self) -> list[tuple[int, int]]:
        """Missing ranges ``[from_ms, to_ms)`` of open times between contiguous runs."""
        segs = self.segments()
        return [(a[1] + self.tf_ms, b[0]) for a, b in itertools.pairwise(segs)]

    def resample(self, tf_ms: int, *, partial: bool = False, missing_ok: int = 0) -> Candles:
        """Aggregate exactly to a coarser timeframe, buckets aligned to the UTC epoch.

        open = first open, high = max, low = min, close = last close, volume = sum. A bucket
        missing any sub-candle is dropped: prices are never invented. ``partial``: such a
        bucket is kept, made of the sub-candles present (what did trade in it, e.g. the range
        of an hour with minutes missing in a crash); its candle is then not the whole bucket's.
        ``missing_ok``: a bucket missing at most this many sub-candles is kept so (a minute or
        two of exchange downtime in an hour), one missing more is dropped.
        """
        if tf_ms % self.tf_ms != 0 or tf_ms < self.tf_ms:
            raise ValueError(
                f"cannot resample {format_timeframe(self.tf_ms)} candles to {tf_ms} ms: "
                "the target must be a whole multiple of the source timeframe"
            )
        per_bucket = tf_ms // self.tf_ms
        if len(self.ts) == 0 or per_bucket == 1:
            return self._take(slice(None))
        bucket = self.ts // tf_ms
        starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
        counts = np.diff(np.concatenate((starts, [len(self.ts)])))
        # Rows are unique and on the source grid, so a full count means no sub-candle is missing.
        full = counts >= per_bucket - missing_ok if not partial else np.ones(len(starts), bool)
        ends = starts + counts - 1
        return Candles(
            ts=_readonly((bucket[starts] * tf_ms)[full]),
            open=_readonly(self.open[starts][full]),
            high=_readonly(np.maximum.reduceat(self.high, starts)[full]),
            low=_readonly(np.minimum.reduceat(self.low, starts)[full]),
            close=_readonly(self.close[ends][full]),
            volume=_readonly(np.add.reduceat(self.volume, starts)[full]),
            tf_ms=tf_ms,
            symbol=self.symbol,
            kind=self.kind,
            source=f"{self.source} resampled to {format_timeframe(tf_ms)}",
        )


@dataclass(frozen=True, eq=False)
class FundingSeries:
    """Funding settlements of one contract, sorted and unique.

    ``ts``: settlement time, int64 UTC epoch ms. ``rate``: fraction of position notional per
    interval (0.0001 = 0.01 %); positive means longs pay shorts.
    """

    ts: I64
    rate: F64
    symbol: str
    source: str

    def __post_init__(self) -> None:
        _check_same_length(f"FundingSeries({self.source})", ts=self.ts, rate=self.rate)
        if self.ts.dtype != np.int64:
            raise ValueError(f"FundingSeries({self.source}): ts must be int64 ms")

    def __len__(self) -> int:
        return len(self.ts)

    def interval_hours_at(self, i: int) -> float:
        """Observed hours between settlement ``i`` and the previous one (the first uses the next).

        Raises DataError when the series has a single settlement: no interval is observable.
        """
        n = len(self.ts)
        if not -n <= i < n:
            raise IndexError(f"settlement index {i} out of range for {n} settlements")
        i %= n
        if n < 2:
            raise DataError(f"{self.source}: one funding settlement, the interval is unknown")
        j = i if i > 0 else 1
        return float(self.ts[j] - self.ts[j - 1]) / HOUR_MS

    def settlement_hours_at(self, i: int) -> float:
        """Hours settlement ``i``'s rate covers (see :func:`settlement_step`): the step from
        the settlement before, unless that step is a hole in the data: then the interval
        around it. Taken as an interval, a hole cuts the rate's yearly cost (a 10-day hole
        thirty-fold; one missing hourly settlement, a 2 h step, by half)."""
        return self.step_at(i)[0]

    def missing_before(self, i: int) -> int:
        """Settlements missing between settlement ``i`` and the one before it (0: none)."""
        return self.step_at(i)[1]

    def step_at(self, i: int) -> tuple[float, int]:
        """:func:`settlement_step` of settlement ``i`` (the first reads its next step): the
        steps around it are the ones before and after it in the file. The step after the latest
        settled one ends at the next settlement, which the venue announces beforehand (the
        simulation's funding view names it too): no look-ahead."""
        step = self.interval_hours_at(i)
        n = len(self.ts)
        j = i % n if i % n > 0 else 1
        before = self.interval_hours_at(j - 1) if j >= 2 else None
        after = float(self.ts[j + 1] - self.ts[j]) / HOUR_MS if j + 1 < n else None
        return settlement_step(before, step, after)

    def between(self, after_ms: int, upto_ms: int) -> range:
        """Indices of the settlements with ``after_ms < ts <= upto_ms``."""
        lo = int(np.searchsorted(self.ts, after_ms, side="right"))
        hi = int(np.searchsorted(self.ts, upto_ms, side="right"))
        return range(lo, max(lo, hi))


_A = TypeVar("_A", bound=npt.NDArray[Any])


def _readonly(a: _A) -> _A:
    a.setflags(write=False)
    return a
