"""Performance statistics of an equity curve, for simulation reports.

Pure functions over numpy arrays. ``equity`` is account equity in quote currency (e.g. USDT), one
value per sample; ``ts_ms`` holds the matching sample times as integer UTC epoch milliseconds,
non-decreasing. Returns and drawdowns are fractions (0.1 = 10 %), never percent. Results are plain
Python floats; rounding is left to the caller.

Sharpe and Sortino use DAILY returns of the equity sampled at UTC day closes (the last sample of
each UTC day), annualised with ``sqrt(365)`` because perpetual futures trade 24/7. Days without any
sample are not filled in: a return is only taken between two consecutive calendar days, so a gap
in the data never turns into one large "daily" return (the same rule as for the market data, see
``/work/shared/data/README.md``, "do not compute returns across a gap"). A simulation's curve
starts with its starting balance, stamped at its start (``opening``): the first day's return runs
from it, so what the first day made or lost is in the ratios as it is in the total return. Its
curve ends with the account at its end (``closing``), stamped at that end, which the run does not
include. With ``closing`` every sample after the run's first instant is the account at the end of
what came before it: a sample stamped 00:00 closes the day before (the account at midnight is that
day's close), so the last interval never adds a "day" of one hour, and an N-day run has N daily
returns whatever its decision interval (daily ticks included: their first sample, at the run's
first instant, is a sample of the first day, not a day of its own).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "DAY_MS",
    "YEAR_MS",
    "cagr",
    "calmar",
    "daily_closes",
    "drawdown_series",
    "max_drawdown",
    "sharpe",
    "sortino",
    "summarize",
    "total_return",
]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DAY_MS = 86_400_000
"""Milliseconds in one UTC day."""
YEAR_MS = 365 * DAY_MS
"""Milliseconds in a 365-day year (24/7 market, no 252-trading-day year)."""

# A standard deviation below this is treated as zero: constant daily returns computed in float64
# can leave a residue of ~1e-18 that would otherwise produce an absurd ratio.
_ZERO_DEVIATION = 1e-12


def _as_finite(equity: npt.ArrayLike) -> F64:
    eq = np.asarray(equity, dtype=np.float64)
    if eq.ndim != 1 or eq.size == 0:
        raise ValueError(f"equity must be a non-empty 1-D array, got shape {eq.shape}")
    bad = np.flatnonzero(~np.isfinite(eq))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"equity must be finite, got {eq[i]} at index {i}")
    return eq


def _as_equity(equity: npt.ArrayLike) -> F64:
    eq = _as_finite(equity)
    if eq[0] <= 0.0:
        raise ValueError(f"equity must start positive, got {eq[0]} at index 0")
    return eq


def _as_series(equity: npt.ArrayLike, ts_ms: npt.ArrayLike) -> tuple[F64, I64]:
    eq = _as_equity(equity)
    ts = np.asarray(ts_ms)
    if ts.ndim != 1 or ts.shape != eq.shape:
        raise ValueError(
            f"ts_ms must be 1-D with the same length as equity, "
            f"got ts_ms shape {ts.shape} and equity shape {eq.shape}"
        )
    if not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"ts_ms must hold integer epoch milliseconds, got dtype {ts.dtype}")
    ts = ts.astype(np.int64)
    back = np.flatnonzero(np.diff(ts) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise ValueError(
            f"ts_ms must be non-decreasing, got {ts[i]} at index {i} after {ts[i - 1]}"
        )
    return eq, ts


def drawdown_series(equity: npt.ArrayLike, start: float | None = None) -> F64:
    """Return the drawdown at each sample: ``1 - equity / running peak`` (fraction, >= 0).

    0 at a new high; 0.25 means 25 % below the highest equity seen so far. Exceeds 1 only if
    equity goes negative. While no positive equity has been seen yet (an account wiped out at
    its first tick) the drawdown is 1: everything is lost.

    ``start``: the account's value before the first sample (a simulation's starting balance).
    The running peak starts there, so what the first sample already lost (the entry's fees and
    slippage) is a drawdown too; one value per sample either way.
    """
    if start is not None:
        return drawdown_series(np.r_[float(start), _as_finite(equity)])[1:]
    eq = _as_finite(equity)
    peak = np.maximum.accumulate(eq)
    if peak[0] > 0.0:
        dd: F64 = 1.0 - eq / peak
        return dd
    out: F64 = np.ones_like(eq)
    seen = peak > 0.0
    out[seen] = 1.0 - eq[seen] / peak[seen]
    return out


def max_drawdown(equity: npt.ArrayLike) -> float:
    """Return the largest drawdown from the running peak (fraction, >= 0; 0.1 = 10 %)."""
    return float(drawdown_series(equity).max())


def total_return(equity: npt.ArrayLike) -> float:
    """Return ``last / first - 1`` (fraction); -1.0 if the final equity is <= 0 (account ruined)."""
    eq = _as_equity(equity)
    if eq[-1] <= 0.0:
        return -1.0
    return float(eq[-1] / eq[0] - 1.0)


def cagr(equity: npt.ArrayLike, ts_ms: npt.ArrayLike) -> float:
    """Return the compound annual growth rate (fraction per 365-day year).

    The span runs from the first to the last timestamp. 0.0 if the span is 0; -1.0 if the final
    equity is <= 0. ``math.inf`` if the annualised figure overflows a float (a large gain over a
    span of hours).
    """
    eq, ts = _as_series(equity, ts_ms)
    years = (int(ts[-1]) - int(ts[0])) / YEAR_MS
    if years == 0.0:
        return 0.0
    if eq[-1] <= 0.0:
        return -1.0
    # Through logs, so a short span does not overflow a power: (1.1) ** 8760 is not a float.
    log_growth = math.log(float(eq[-1] / eq[0])) / years
    try:
        return math.expm1(log_growth)
    except OverflowError:
        return math.inf


def daily_closes(
    equity: npt.ArrayLike, ts_ms: npt.ArrayLike, *, closing: bool = False
) -> tuple[I64, F64]:
    """Return ``(day_start_ms, close)``: the last equity value of each UTC day that has samples.

    ``day_start_ms`` is that day's 00:00 UTC in epoch ms, increasing. Days without samples are
    absent (not forward-filled). ``closing``: the last sample is the account at the end of the
    run, stamped at that (excluded) end (see the module docstring).
    """
    eq, ts = _as_series(equity, ts_ms)
    return _closes_by_day(eq, ts, closing=closing)


def _closes_by_day(eq: F64, ts: I64, *, closing: bool = False) -> tuple[I64, F64]:
    if closing and ts.size:
        # A sample is the account at the end of what came before it: one at 00:00 closes the
        # day before. Those at the run's first instant are samples of its first day (the entry
        # costs of a first tick at 00:00 are that day's), never a day before it of their own.
        day = np.maximum((ts - 1) // DAY_MS, int(ts[0]) // DAY_MS)
    else:
        day = ts // DAY_MS
    last = np.append(np.flatnonzero(np.diff(day) != 0), day.size - 1)
    days: I64 = (day[last] * DAY_MS).astype(np.int64)
    closes: F64 = eq[last]
    return days, closes


def _daily_returns(
    equity: npt.ArrayLike, ts_ms: npt.ArrayLike, *, opening: bool = False, closing: bool = False
) -> F64:
    """Simple returns between closes of consecutive calendar days (fractions).

    ``opening``: the first sample is the account's value before the first day's samples (a
    simulation's starting balance, stamped at its start): the close before that day, so the
    first day's return is counted. Taken as one more sample of its own day it is no day's
    close, and whatever the first day made or lost (a crash on it, the entries' costs) would
    be in no return: a run that lost 4 % on its first day and drifted up after read as a
    Sharpe ratio of +8. ``closing``: the last sample is the account at the run's end (see the
    module docstring)."""
    if opening:
        eq, ts = _as_series(equity, ts_ms)
        if eq.size < 2:
            return np.zeros(0)
        days, closes = _closes_by_day(eq[1:], ts[1:], closing=closing)
        days, closes = np.r_[days[0] - DAY_MS, days], np.r_[eq[0], closes]
    else:
        days, closes = daily_closes(equity, ts_ms, closing=closing)
    ruined = np.flatnonzero(closes <= 0.0)
    if ruined.size:
        # Nothing is defined after the account is wiped out; that day counts as a -100 % day.
        stop = int(ruined[0]) + 1
        days, closes = days[:stop], closes[:stop]
    rets = np.maximum(closes[1:] / closes[:-1] - 1.0, -1.0)
    consecutive = np.diff(days) == DAY_MS
    out: F64 = rets[consecutive]
    return out


def sharpe(
    equity: npt.ArrayLike,
    ts_ms: npt.ArrayLike,
    periods_per_year: float = 365,
    *,
    opening: bool = False,
    closing: bool = False,
) -> float:
    """Return the annualised Sharpe ratio of daily returns, risk-free rate 0.

    ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` over the daily returns described in the
    module docstring. 0.0 when undefined: fewer than 2 daily returns or zero deviation.
    ``opening``: the first sample is the value before the first day; ``closing``: the last is the
    account at the run's end (see :func:`_daily_returns`).
    """
    rets = _daily_returns(equity, ts_ms, opening=opening, closing=closing)
    if rets.size < 2:
        return 0.0
    sd = float(np.std(rets, ddof=1))
    if sd < _ZERO_DEVIATION:
        return 0.0
    return float(np.mean(rets)) / sd * math.sqrt(periods_per_year)


def sortino(
    equity: npt.ArrayLike,
    ts_ms: npt.ArrayLike,
    periods_per_year: float = 365,
    *,
    opening: bool = False,
    closing: bool = False,
) -> float:
    """Return the annualised Sortino ratio of daily returns, target 0.

    ``mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(periods_per_year)``: the downside deviation
    averages over ALL days, the positive ones counting as 0. 0.0 when undefined: fewer than 2
    daily returns or no losing day (zero downside deviation). ``opening``, ``closing``: as for
    :func:`sharpe`.
    """
    rets = _daily_returns(equity, ts_ms, opening=opening, closing=closing)
    if rets.size < 2:
        return 0.0
    downside = math.sqrt(float(np.mean(np.minimum(rets, 0.0) ** 2)))
    if downside < _ZERO_DEVIATION:
        return 0.0
    return float(np.mean(rets)) / downside * math.sqrt(periods_per_year)


def calmar(equity: npt.ArrayLike, ts_ms: npt.ArrayLike) -> float:
    """Return ``cagr / max_drawdown`` (dimensionless); 0.0 if there was no drawdown."""
    dd = max_drawdown(equity)
    if dd == 0.0:
        return 0.0
    return cagr(equity, ts_ms) / dd


def summarize(
    equity: npt.ArrayLike, ts_ms: npt.ArrayLike, *, opening: bool = False, closing: bool = False
) -> dict[str, float]:
    """Return total_return, cagr, max_drawdown, sharpe, sortino and calmar as defined above.
    ``opening``: the first sample is the value before the first day (a simulation's starting
    balance): the first day's return counts in the Sharpe and Sortino ratios. ``closing``: the
    last sample is the account at the run's end, stamped at it (a simulation's), the close of
    the day its last interval lies in."""
    return {
        "total_return": total_return(equity),
        "cagr": cagr(equity, ts_ms),
        "max_drawdown": max_drawdown(equity),
        "sharpe": sharpe(equity, ts_ms, opening=opening, closing=closing),
        "sortino": sortino(equity, ts_ms, opening=opening, closing=closing),
        "calmar": calmar(equity, ts_ms),
    }
