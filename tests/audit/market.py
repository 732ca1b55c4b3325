"""Synthetic markets for the adversarial audit, written as the project's data files.

A market is built from a path of closes on a fixed candle grid; a scenario then bends it
(a crash inside one candle, a gap over missing candles, a spike, a flat stretch, mark and last
diverging, extreme funding) and writes trade candles, mark candles and funding in the bundled
sample's format, so the simulation reads them through its ordinary loaders.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass
class Series:
    """OHLCV rows on a grid (``ts`` open times); ``keep`` drops rows (missing data)."""

    ts: Ints
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    volume: Floats
    keep: npt.NDArray[np.bool_] = field(default_factory=lambda: np.ones(0, dtype=bool))

    def __post_init__(self) -> None:
        if self.keep.size == 0:
            self.keep = np.ones(self.ts.size, dtype=bool)

    def copy(self) -> Series:
        return Series(
            self.ts.copy(),
            self.open.copy(),
            self.high.copy(),
            self.low.copy(),
            self.close.copy(),
            self.volume.copy(),
            self.keep.copy(),
        )

    def index(self, ts_ms: int) -> int:
        return int(np.searchsorted(self.ts, ts_ms))

    def scale_from(self, i: int, factor: float) -> None:
        """Every price from row ``i`` on multiplied by ``factor`` (a level shift)."""
        for a in (self.open, self.high, self.low, self.close):
            a[i:] *= factor

    def crash_inside(self, i: int, fall: float, recover: float = 0.0) -> None:
        """Row ``i`` opens at the last close, trades ``fall`` lower, closes ``recover`` above
        its low; everything after continues from that close."""
        o = self.close[i - 1] if i > 0 else self.open[i]
        low = o * (1 - fall)
        close = low * (1 + recover)
        self.scale_from(i + 1, close / self.open[i + 1] if i + 1 < self.ts.size else 1.0)
        self.open[i], self.low[i], self.close[i] = o, low, close
        self.high[i] = max(o, close) * 1.0001
        if i + 1 < self.ts.size:
            self.open[i + 1] = close
            self.high[i + 1] = max(self.high[i + 1], close)
            self.low[i + 1] = min(self.low[i + 1], close)

    def spike_inside(self, i: int, rise: float, give_back: float = 0.0) -> None:
        """Row ``i`` trades ``rise`` above its open and closes ``give_back`` below that high."""
        o = self.close[i - 1] if i > 0 else self.open[i]
        high = o * (1 + rise)
        close = high * (1 - give_back)
        self.scale_from(i + 1, close / self.open[i + 1] if i + 1 < self.ts.size else 1.0)
        self.open[i], self.high[i], self.close[i] = o, high, close
        self.low[i] = min(o, close) * 0.9999
        if i + 1 < self.ts.size:
            self.open[i + 1] = close
            self.high[i + 1] = max(self.high[i + 1], close)
            self.low[i + 1] = min(self.low[i + 1], close)

    def gap(self, i: int, n_missing: int, factor: float) -> None:
        """``n_missing`` rows from ``i`` are missing; trading resumes ``factor`` away."""
        self.keep[i : i + n_missing] = False
        j = i + n_missing
        self.scale_from(j, factor)

    def flat(self, i: int, j: int) -> None:
        """Rows ``[i, j)`` do not move at all (zero range, zero volume); after, the walk
        resumes from that level."""
        level = self.close[i - 1] if i > 0 else self.open[i]
        for a in (self.open, self.high, self.low, self.close):
            a[i:j] = level
        self.volume[i:j] = 0.0
        if j < self.ts.size:
            self.scale_from(j, level / self.open[j])


def walk(
    n: int,
    price0: float,
    *,
    tf_ms: int = 5 * MINUTE,
    vol_per_bar: float = 0.002,
    seed: int = 0,
    start_ms: int = T0,
    drift: float = 0.0,
) -> Series:
    """A seeded log-normal walk of ``n`` candles of ``tf_ms`` from ``price0``."""
    rng = np.random.default_rng(seed)
    r = drift + vol_per_bar * rng.standard_normal(n)
    close = price0 * np.exp(np.cumsum(r))
    open_ = np.r_[price0, close[:-1]]
    wick = np.abs(rng.normal(0.0, vol_per_bar / 3, (2, n)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    ts = start_ms + tf_ms * np.arange(n, dtype=np.int64)
    volume = rng.uniform(1e6, 1e8, n) / price0  # $1M .. $100M a candle: a liquid contract
    return Series(ts, open_, high, low, close, volume)


def _fmt(x: float) -> str:
    return repr(float(x))


def write_candles(path: Path, s: Series) -> None:
    rows = ["timestamp,open,high,low,close,volume"]
    for k in np.flatnonzero(s.keep):
        o, h, lo, c = s.open[k], s.high[k], s.low[k], s.close[k]
        h = max(h, o, c)
        lo = min(lo, o, c)
        rows.append(f"{int(s.ts[k])},{_fmt(o)},{_fmt(h)},{_fmt(lo)},{_fmt(c)},{_fmt(s.volume[k])}")
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(rows) + "\n")


def write_funding(path: Path, ts: Ints, rates: Floats) -> None:
    rows = ["timestamp,funding_rate"] + [
        f"{int(t)},{_fmt(r)}" for t, r in zip(ts, rates, strict=True)
    ]
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(rows) + "\n")


def stem(symbol: str) -> str:
    return symbol.replace("/", "_").replace(":", "_")


def write_market(
    data: Path,
    symbol: str,
    trade: Series,
    mark: Series | None = None,
    funding: tuple[Ints, Floats] | None = None,
) -> None:
    """Trade candles (and mark candles, funding) of ``symbol`` into ``data``."""
    data.mkdir(parents=True, exist_ok=True)
    tf_ms = int(trade.ts[1] - trade.ts[0])
    tf = f"{tf_ms // HOUR}h" if tf_ms % HOUR == 0 else f"{tf_ms // MINUTE}m"
    write_candles(data / f"{stem(symbol)}-{tf}.csv.gz", trade)
    if mark is not None:
        mark = mark.copy()
        mark.volume[:] = 0.0
        write_candles(data / f"{stem(symbol)}-{tf}-mark.csv.gz", mark)
    if funding is not None:
        write_funding(data / f"{stem(symbol)}-funding.csv.gz", *funding)


def eight_hourly(start_ms: int, end_ms: int, rate: float) -> tuple[Ints, Floats]:
    ts = np.arange(start_ms, end_ms, 8 * HOUR, dtype=np.int64)
    return ts, np.full(ts.size, rate)
