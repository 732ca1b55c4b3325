"""A liquidation cascade like Binance's of 2025-10-10 (about 21:00-21:20 UTC), spliced minute by
minute into a 1-minute market and written in the data files' format: 1m, 5m and 1h last-trade
candles, 1h mark candles, funding.

Within a few minutes the last price wicks ``trade_fall`` below the level before the event while
the mark (an index median) falls only ``mark_fall``; the last-trade candles then go missing for
``gap_minutes`` (the exchange overloaded) and the market recovers, within the hour, half of the
mark's fall. Funding settles at ``-funding_cap`` (the perpetual far below its index: shorts pay
longs) at the first settlement after the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.audit.market import (
    DAY,
    HOUR,
    MINUTE,
    T0,
    Floats,
    Ints,
    Series,
    stem,
    walk,
    write_candles,
    write_funding,
)

EVENT_DAY = 8  # a week of 1h warm-up first
EVENT_MINUTE = 21 * 60  # 21:00 UTC
DAYS = 10


@dataclass(frozen=True)
class Cascade:
    trade_fall: float  # the last-trade wick below the level before the event
    mark_fall: float  # the mark's lowest point below it
    wick_minutes: int = 2  # minutes the last price stays in the wick
    gap_minutes: int = 4  # last-trade candles missing after the wick
    funding_cap: float = 0.02  # |rate| of the settlement after the event
    recover: float = 0.5  # share of the mark's fall regained within the hour


BTC_LIKE = Cascade(
    trade_fall=0.14, mark_fall=0.12, wick_minutes=3, gap_minutes=0, funding_cap=0.003
)
MAJOR_ALT = Cascade(trade_fall=0.40, mark_fall=0.20)
THIN_ALT = Cascade(trade_fall=0.85, mark_fall=0.35, gap_minutes=6)

EVENT_MS = T0 + EVENT_DAY * DAY + EVENT_MINUTE * MINUTE


def _level(n: int, event: int, c: Cascade) -> Floats:
    """Multiplier of the mark path per minute: 1 before, down to ``1 - mark_fall`` over three
    minutes, back up ``recover`` of the fall by the hour's end, flat after."""
    f = np.ones(n)
    bottom = 1 - c.mark_fall
    down = np.linspace(1, bottom, 4)[1:]
    f[event : event + 3] = down
    back = bottom + c.recover * c.mark_fall
    up = np.linspace(bottom, back, 57)
    f[event + 3 : event + 60] = up
    f[event + 60 :] = back
    return f


def build(base: Series, event: int, c: Cascade) -> tuple[Series, Series]:
    """(last-trade, mark) 1-minute candles: ``base`` with the cascade from row ``event``."""
    f = _level(base.ts.size, event, c)
    prev = np.r_[f[0], f[:-1]]
    mark = base.copy()
    mark.open *= prev
    mark.close *= f
    mark.high = np.maximum(mark.open, mark.close) * (base.high / np.maximum(base.open, base.close))
    mark.low = np.minimum(mark.open, mark.close) * (base.low / np.minimum(base.open, base.close))
    trade = mark.copy()
    pre = float(base.close[event - 1])
    for k in range(event, event + c.wick_minutes):
        trade.low[k] = min(trade.low[k], pre * (1 - c.trade_fall))
        trade.volume[k] *= 20  # everyone sells
    gap_from = event + c.wick_minutes
    trade.keep[gap_from : gap_from + c.gap_minutes] = False
    return trade, mark


def resample(s: Series, minutes: int) -> Series:
    """Candles of ``minutes`` from 1-minute ``s`` (its kept rows; a bucket is kept if any row is:
    the venue still prints an hour candle over an overloaded minute)."""
    step = minutes * MINUTE
    bucket = (s.ts[s.keep] - T0) // step
    ts_all = s.ts[s.keep]
    out_ts, o, h, lo, cl, v = [], [], [], [], [], []
    idx = np.flatnonzero(s.keep)
    for b in np.unique(bucket):
        rows = idx[bucket == b]
        out_ts.append(T0 + int(b) * step)
        o.append(s.open[rows[0]])
        h.append(s.high[rows].max())
        lo.append(s.low[rows].min())
        cl.append(s.close[rows[-1]])
        v.append(s.volume[rows].sum())
    del ts_all
    return Series(
        np.array(out_ts, dtype=np.int64),
        np.array(o),
        np.array(h),
        np.array(lo),
        np.array(cl),
        np.array(v),
    )


def funding_tape(
    end_ms: int, c: Cascade, base_rate: float = 0.0001, event_ms: int = EVENT_MS
) -> tuple[Ints, Floats]:
    ts = np.arange(T0, end_ms, 8 * HOUR, dtype=np.int64)
    rates = np.full(ts.size, base_rate)
    rates[np.searchsorted(ts, event_ms)] = -c.funding_cap  # 00:00 the day after
    return ts, rates


def write_cascade(
    data: Path,
    symbol: str,
    price0: float,
    c: Cascade,
    *,
    seed: int = 0,
    days: int = DAYS,
    base: Series | None = None,
    with_1m: bool = True,
    event_day: int = EVENT_DAY,
) -> tuple[Series, Series]:
    """Write ``symbol``'s cascade market into ``data``; ``base``: 1-minute candles to splice the
    cascade into (a real series), else a seeded walk from ``price0``; the cascade at 21:00 UTC
    of ``event_day`` (0: the first day)."""
    data.mkdir(parents=True, exist_ok=True)
    n = days * 1440
    if base is None:
        base = walk(n, price0, tf_ms=MINUTE, vol_per_bar=0.0008, seed=seed)
    event_ms = T0 + event_day * DAY + EVENT_MINUTE * MINUTE
    trade, mark = build(base, (event_ms - T0) // MINUTE, c)
    name = stem(symbol)
    if with_1m:
        write_candles(data / f"{name}-1m.csv.gz", trade)
    write_candles(data / f"{name}-5m.csv.gz", resample(trade, 5))
    write_candles(data / f"{name}-1h.csv.gz", resample(trade, 60))
    mark_h = resample(mark, 60)
    mark_h.volume[:] = 0.0
    write_candles(data / f"{name}-1h-mark.csv.gz", mark_h)
    tape = funding_tape(T0 + days * DAY, c, event_ms=event_ms)
    write_funding(data / f"{name}-funding.csv.gz", *tape)
    return trade, mark
