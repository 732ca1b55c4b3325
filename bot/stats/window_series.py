"""The point estimates of :mod:`bot.stats.volatility` for every window of a history, at once.

Two uses:

* the simulation: the engine estimates volatility and ATR each tick from the last closed candles
  it reads (:func:`bot.engine.market.build_snapshot`). Those candles are rows of a history
  already in memory, so :func:`trailing_estimates` and :func:`trailing_atr` compute the numbers
  of every tick in one vectorised pass and the market-data port hands each window its values;
* history views (``bot vol``): :func:`rolling` and :func:`rolling_atr`, one value per candle.

Each window is computed with the point estimate's own formula and two-pass sample variances (no
running sums, whose cancellation grows with the history), so a value differs from the point
estimate only in the order of a few float additions (about 1e-15 relative); the engine rounds
volatility to 6 decimals and ATR to 8 digits, far above that.

Indexing of the ``trailing_*`` functions is by window **end** ``e`` (exclusive): ``out[e]`` is the
statistic over the candles before ``e``, so the arrays have ``n + 1`` entries, NaN where there are
too few candles. They trust their input (validated where the history was loaded); the rolling
forms validate it.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bot.stats.volatility import (
    _ATR_HORIZON,
    _GK_OC,
    _NEEDS_PREVIOUS,
    _PARKINSON,
    ESTIMATORS,
    FloatArray,
    _arrays,
    _atr_weights,
    _check_lam,
    _check_params,
    _check_prices,
    _ewma_weights,
    _true_range,
    _yz_k,
)

__all__ = ["rolling", "rolling_atr", "trailing_atr", "trailing_estimates", "trailing_mean"]

_ROWS = 2048  # windows per block: bounds the temporary (rows x window) arrays


def _blocks(n_rows: int) -> list[slice]:
    return [slice(a, min(a + _ROWS, n_rows)) for a in range(0, n_rows, _ROWS)]


def _sample_vars(x: FloatArray, window: int) -> FloatArray:
    """Sample variance (ddof=1) of every ``window`` consecutive values, two-pass per window."""
    views = sliding_window_view(x, window)
    out = np.empty(len(views))
    for b in _blocks(len(views)):
        w = views[b]
        d = w - (w.sum(axis=1) / window)[:, None]
        out[b] = np.einsum("ij,ij->i", d, d) / (window - 1)
    return out


def _dots(x: FloatArray, y: FloatArray, window: int) -> FloatArray:
    """Sum of x·y over every ``window`` consecutive positions."""
    xv, yv = sliding_window_view(x, window), sliding_window_view(y, window)
    out = np.empty(len(xv))
    for b in _blocks(len(xv)):
        out[b] = np.einsum("ij,ij->i", xv[b], yv[b])
    return out


def _weighted(x: FloatArray, weights: FloatArray) -> FloatArray:
    """x's every ``len(weights)`` consecutive values dotted with ``weights`` (oldest first)."""
    views = sliding_window_view(x, len(weights))
    out = np.empty(len(views))
    for b in _blocks(len(views)):
        out[b] = views[b] @ weights
    return out


def trailing_estimates(
    name: str,
    open: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    window: int,
    periods_per_year: float,
    lam: float = 0.94,
) -> FloatArray:
    """``out[e]`` = :func:`bot.stats.volatility.estimate` of ``name`` over the candles before
    ``e``: it reads the last ``window + 1`` of them (``window`` for the high-low estimators,
    parkinson and garman_klass), NaN while fewer exist."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown volatility estimator {name!r}; valid: {', '.join(ESTIMATORS)}")
    _check_params(f"trailing_estimates({name!r})", window, periods_per_year)
    n = len(close)
    out = np.full(n + 1, np.nan)
    needed = window + 1 if name in _NEEDS_PREVIOUS else window
    if n < needed:
        return out
    if name in ("parkinson", "garman_klass"):
        # Candle j alone: the window before e is candles e-window .. e-1, row e-window.
        u = np.log(high / low)
        if name == "parkinson":
            var = _dots(u, u, window) * _PARKINSON / window
        else:
            oc = np.log(close / open)
            var = (0.5 * _dots(u, u, window) - _GK_OC * _dots(oc, oc, window)) / window
    elif name in ("close_to_close", "ewma"):
        # Terms of candles 1..n-1 (each needs the previous close): the window before e covers
        # the terms of candles e-window .. e-1, row e-window-1.
        r = np.log(close[1:] / close[:-1])
        if name == "close_to_close":
            var = _sample_vars(r, window)
        else:
            var = _weighted(r * r, _ewma_weights(window, float(lam)))
    else:
        o1 = open[1:]
        oc = np.log(close[1:] / o1)
        ho, lo_o = np.log(high[1:] / o1), np.log(low[1:] / o1)
        rs = (_dots(ho, ho - oc, window) + _dots(lo_o, lo_o - oc, window)) / window
        k = _yz_k(window)
        var = (
            _sample_vars(np.log(o1 / close[:-1]), window)
            + k * _sample_vars(oc, window)
            + (1.0 - k) * rs
        )
    out[needed:] = np.sqrt(np.maximum(var, 0.0) * periods_per_year)
    return out


def trailing_mean(x: FloatArray, window: int) -> FloatArray:
    """``out[e]`` = mean of the ``window`` values before ``e`` (a candle's traded volume: see
    :func:`bot.engine.market.window_volume`); NaN while fewer exist."""
    if window < 1:
        raise ValueError(f"trailing_mean needs window >= 1, got {window}")
    n = len(x)
    out = np.full(n + 1, np.nan)
    if n < window:
        return out
    views = sliding_window_view(x, window)
    for b in _blocks(len(views)):
        out[window + b.start : window + b.stop] = views[b].sum(axis=1) / window
    return out


def trailing_atr(
    high: FloatArray, low: FloatArray, close: FloatArray, window: int, span: int
) -> FloatArray:
    """``out[e]`` = :func:`bot.stats.volatility.atr` over exactly the ``span`` candles before
    ``e`` (Wilder's average seeded at the window's first candles); NaN while fewer exist."""
    if window < 2 or span < window + 1:
        raise ValueError(f"atr needs window >= 2 and span >= window + 1, got {window}, {span}")
    n = len(close)
    out = np.full(n + 1, np.nan)
    if n < span:
        return out
    tr = _true_range(high, low, close)  # tr[j - 1] belongs to candle j
    decay = (window - 1) / window
    m = span - 1 - window  # true ranges after the seed's
    k = min(m, math.ceil(_ATR_HORIZON / -math.log(decay)))
    rows = n - span + 1  # windows [s, s + span) for s = 0 .. n - span
    # Seed of the window starting at candle s: mean of tr of candles s+1 .. s+window.
    seeds = sliding_window_view(tr, window)[:rows].sum(axis=1) / window
    value = decay**m * seeds
    if k > 0:
        # The last k true ranges of the window: candles s+span-k .. s+span-1.
        value = value + _weighted(tr[span - 1 - k :], _atr_weights(window, k))[:rows] / window
    out[span:] = value
    return out


def rolling(
    name: str,
    open: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    window: int,
    periods_per_year: float,
    lam: float = 0.94,
) -> FloatArray:
    """Return estimator ``name``'s annualised volatility at every candle, NaN until enough history.

    ``out[i] == estimate(name, open[:i+1], ..., window, periods_per_year, lam)`` up to rounding
    (about 1e-15 relative). O(n·window), vectorised. All candles are validated, since every one
    falls in some window.
    """
    if name not in ESTIMATORS:
        raise ValueError(f"unknown volatility estimator {name!r}; valid: {', '.join(ESTIMATORS)}")
    fn = f"rolling({name!r})"
    _check_params(fn, window, periods_per_year)
    _check_lam(fn, lam)
    o, h, lo, c = _arrays(fn, open=open, high=high, low=low, close=close)
    if name in ("close_to_close", "ewma"):
        _check_prices(fn, 0, close=c)
    elif name == "parkinson":
        _check_prices(fn, 0, high=h, low=lo)
    else:
        _check_prices(fn, 0, open=o, high=h, low=lo, close=c)
    return trailing_estimates(name, o, h, lo, c, window, periods_per_year, float(lam))[1:]


def rolling_atr(high: FloatArray, low: FloatArray, close: FloatArray, window: int) -> FloatArray:
    """Return Wilder's ATR (price units) at every candle; NaN for candles 0..window-1.

    ``out[i] == atr(high[:i+1], low[:i+1], close[:i+1], window)`` up to rounding: the average
    runs over the whole history from candle 0 (unlike :func:`trailing_atr`'s fixed span).
    """
    _check_params("rolling_atr", window, None)
    h, lo, c = _arrays("rolling_atr", high=high, low=low, close=close)
    _check_prices("rolling_atr", 0, high=h, low=lo, close=c)
    n = len(c)
    out = np.full(n, np.nan)
    if n < window + 1:
        return out
    tr = _true_range(h, lo, c)
    value = float(tr[:window].sum()) / window
    out[window] = value
    decay = (window - 1) / window
    # Wilder's recursion is inherently sequential; a loop over Python floats is ~5 ms per 50k.
    smoothed = [0.0] * (n - 1 - window)
    for k, x in enumerate(tr[window:].tolist()):
        value = decay * value + x / window
        smoothed[k] = value
    out[window + 1 :] = smoothed
    return out
