"""The engine's per-tick statistics for every possible window of a history, computed at once.

The engine estimates volatility and ATR each tick from the last closed candles it reads
(:func:`bot.engine.market.build_snapshot`). In simulation those candles are rows of a history
already in memory, so the same numbers can be computed for every tick in one vectorised pass
and looked up: that is what these functions do. They are the point estimates of
:mod:`bot.stats.volatility` applied to each window, with the same formulas and two-pass
variances (not the O(n) cumulative sums of :func:`bot.stats.volatility.rolling`), so a value
differs from the point estimate only in the order of a few float additions (about 1e-15
relative): the engine rounds volatility to 6 and ATR to 8 decimals, far above that.

Indexing is by window **end** ``e`` (exclusive): ``out[e]`` is the statistic over candles
``[e - span, e)``, so the arrays have ``n + 1`` entries and hold NaN where a window would start
before candle 0. Prices are validated where the history is loaded, not here.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bot.stats.volatility import (
    _ATR_HORIZON,
    _GK_OC,
    _PARKINSON,
    ESTIMATORS,
    FloatArray,
    _atr_weights,
    _ewma_weights,
    _true_range,
    _yz_k,
)

__all__ = ["trailing_atr", "trailing_estimates"]

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
    ``e`` (it reads the last ``window + 1`` of them, ``window`` for the high-low estimators);
    NaN while fewer exist."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown volatility estimator {name!r}; valid: {', '.join(ESTIMATORS)}")
    if window < 2:
        raise ValueError(f"window must be an integer >= 2, got {window!r}")
    n = len(close)
    out = np.full(n + 1, np.nan)
    if n < window + 1:
        return out
    # Per-candle terms of candles 1..n-1 (each needs the previous close or uses candle j alone):
    # the window ending before e covers terms e-window .. e-1, i.e. row e-window-1 of the view
    # over the terms of candles 1..n-1, for e = window+1 .. n.
    if name in ("close_to_close", "ewma"):
        r = np.log(close[1:] / close[:-1])
        if name == "close_to_close":
            var = _sample_vars(r, window)
        else:
            var = _weighted(r * r, _ewma_weights(window, float(lam)))
    elif name in ("parkinson", "garman_klass"):
        u = np.log(high[1:] / low[1:])
        if name == "parkinson":
            var = _dots(u, u, window) * _PARKINSON / window
        else:
            oc = np.log(close[1:] / open[1:])
            var = (0.5 * _dots(u, u, window) - _GK_OC * _dots(oc, oc, window)) / window
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
    out[window + 1 :] = np.sqrt(np.maximum(var, 0.0) * periods_per_year)
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
