"""Candle timeframes: parsing, periods per year, and which candles are closed.

Timestamps are integer epoch milliseconds; a candle is stamped with its **open** time (Binance,
Bybit and ccxt all do this), so a ``1h`` candle stamped 10:00 closes at 11:00.
"""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt

__all__ = ["MS_PER_YEAR", "closed_count", "parse_timeframe", "periods_per_year"]

_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# Lower-case units only: in ccxt "1M" is one month, which has no fixed length in milliseconds.
_TIMEFRAME_RE = re.compile(r"([1-9][0-9]*)([mhdw])")
_ACCEPTED = "<int><m|h|d|w> with a positive integer, e.g. 1m 5m 15m 1h 4h 8h 1d 1w"

MS_PER_YEAR = 365 * 24 * 3_600_000
"""Milliseconds in a 365-day year. Perpetual futures trade 24/7, so no 252-trading-day year."""


def parse_timeframe(tf: str) -> int:
    """Return the length of timeframe ``tf`` ("1m", "5m", "1h", "4h", "1d", "1w", ...) in ms.

    Accepts any ``<positive int><m|h|d|w>``; raises ``ValueError`` naming the bad value otherwise.
    """
    match = _TIMEFRAME_RE.fullmatch(tf) if isinstance(tf, str) else None
    if match is None:
        raise ValueError(f"invalid timeframe {tf!r}: expected {_ACCEPTED}")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def periods_per_year(tf_ms: int) -> float:
    """Return how many candles of ``tf_ms`` milliseconds fit in a 365-day, 24/7 year.

    ``periods_per_year(parse_timeframe("1h")) == 8760.0``.
    """
    if isinstance(tf_ms, bool) or not isinstance(tf_ms, int | np.integer) or tf_ms <= 0:
        raise ValueError(f"timeframe length must be a positive integer of ms, got {tf_ms!r}")
    return MS_PER_YEAR / int(tf_ms)


def closed_count(open_ts_ms: npt.NDArray[np.int64], tf_ms: int, now_ms: int) -> int:
    """Return how many leading candles are closed at ``now_ms`` (all times epoch ms).

    ``open_ts_ms`` holds candle open times, strictly increasing. A candle stamped ``t`` is closed
    once ``t + tf_ms <= now_ms``; ``close[:closed_count(...)]`` drops the still-forming candle.
    """
    if tf_ms <= 0:
        raise ValueError(f"tf_ms must be positive, got {tf_ms}")
    ts = np.asarray(open_ts_ms)
    if ts.ndim != 1:
        raise ValueError(f"open_ts_ms must be 1-D, got shape {ts.shape}")
    if ts.size > 1:
        steps = np.diff(ts)
        if not (steps > 0).all():
            i = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise ValueError(
                f"open_ts_ms must be strictly increasing: open_ts_ms[{i}]={ts[i]} "
                f"after open_ts_ms[{i - 1}]={ts[i - 1]}"
            )
    # Sorted, so the closed candles are exactly those with t <= now_ms - tf_ms.
    return int(np.searchsorted(ts, now_ms - tf_ms, side="right"))
