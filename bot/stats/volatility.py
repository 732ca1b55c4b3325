"""Volatility estimators and Wilder's ATR over closed candles, as pure numpy functions.

Every function takes 1-D float64 arrays of **closed** candles, oldest first (drop the forming
candle with :func:`bot.stats.timeframes.closed_count`). Volatilities are annualised fractions
(0.62 = 62 % a year): the per-candle variance is multiplied by ``periods_per_year`` (8760 for 1h
candles on a 24/7 market) before the square root. ATR is in price units.

Point estimates read and validate only the tail their window needs, so they cost tens of
microseconds and can run every tick. The same statistics for every window of a history at once
are in :mod:`bot.stats.window_series`.

Candles needed: ``close_to_close``, ``ewma`` and ``yang_zhang`` need ``window + 1`` (``window``
returns, or one previous close for the first overnight return); ``parkinson`` and
``garman_klass`` need ``window``; ``atr`` needs ``window + 1`` and uses every candle it is given.

Prices must be finite and > 0, and for estimators that read highs and lows each candle must
satisfy ``low <= open, close <= high``; anything else raises ``ValueError`` naming the index.
"""

from __future__ import annotations

import functools
import math
from functools import lru_cache

import numpy as np
import numpy.typing as npt

__all__ = [
    "ESTIMATORS",
    "atr",
    "close_to_close",
    "estimate",
    "ewma",
    "garman_klass",
    "parkinson",
    "yang_zhang",
]

FloatArray = npt.NDArray[np.float64]

ESTIMATORS: tuple[str, ...] = (
    "close_to_close",
    "ewma",
    "parkinson",
    "garman_klass",
    "yang_zhang",
)

_PARKINSON = 1.0 / (4.0 * math.log(2.0))
_GK_OC = 2.0 * math.log(2.0) - 1.0
_ATR_HORIZON = 18.0 * math.log(10.0)  # -ln(1e-18)
_NEEDS_PREVIOUS = frozenset({"close_to_close", "ewma", "yang_zhang"})


# ---------------------------------------------------------------- validation


def _check_params(fn: str, window: int, periods_per_year: float | None) -> None:
    if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 2:
        raise ValueError(f"{fn}: window must be an integer >= 2, got {window!r}")
    if periods_per_year is not None and not 0.0 < periods_per_year < math.inf:
        raise ValueError(f"{fn}: periods_per_year must be > 0 and finite, got {periods_per_year!r}")


def _check_lam(fn: str, lam: float) -> None:
    if not 0.0 < lam < 1.0:
        raise ValueError(f"{fn}: lam must be in (0, 1), got {lam!r}")


def _arrays(fn: str, **named: FloatArray) -> list[FloatArray]:
    """Return the inputs as 1-D float64 arrays (no copy when they already are) of one length."""
    out = [np.asarray(a, dtype=np.float64) for a in named.values()]
    lengths = {name: a.shape for name, a in zip(named, out, strict=True)}
    if any(len(s) != 1 for s in lengths.values()) or len({s[0] for s in lengths.values()}) > 1:
        raise ValueError(f"{fn}: inputs must be 1-D arrays of one length, got shapes {lengths}")
    return out


def _need(fn: str, window: int, needed: int, given: int) -> None:
    if given < needed:
        raise ValueError(
            f"{fn}: window={window} needs at least {needed} closed candles, got {given}"
        )


def _check_prices(fn: str, start: int, **named: FloatArray) -> None:
    """Raise unless every price is finite and > 0 and, given highs and lows, low <= o, c <= high.

    ``start`` is the index of element 0 in the caller's arrays, so errors name the caller's index.
    A NaN fails every comparison, so one vectorised pass catches NaN, inf, <= 0 and bad candles.
    """
    high, low = named.get("high"), named.get("low")
    if high is None or low is None:
        ok = np.ones(next(iter(named.values())).shape, dtype=bool)
        for x in named.values():
            ok &= (x > 0.0) & (x < math.inf)
    else:
        ok = (low > 0.0) & (low <= high) & (high < math.inf)
        for name, x in named.items():
            if name not in ("high", "low"):
                ok &= (low <= x) & (x <= high)
    if ok.all():
        return
    j = int(np.flatnonzero(~ok)[0])
    for name, x in named.items():
        if not 0.0 < x[j] < math.inf:
            raise ValueError(f"{fn}: {name}[{start + j}]={float(x[j])!r} is not a finite price > 0")
    values = ", ".join(f"{name}={float(x[j])!r}" for name, x in named.items())
    raise ValueError(f"{fn}: candle {start + j} has {values}: need low <= open, close <= high")


def _tail(
    fn: str, window: int, needed: int, checked: bool = False, **named: FloatArray
) -> list[FloatArray]:
    if checked:  # the caller vouches for 1-D float64 arrays of valid candles (validated at load)
        arrays = list(named.values())
        _need(fn, window, needed, len(arrays[0]))
        n = len(arrays[0])
        return [a[n - needed :] for a in arrays]
    arrays = _arrays(fn, **named)
    n = len(arrays[0])
    _need(fn, window, needed, n)
    tails = [a[n - needed :] for a in arrays]
    _check_prices(fn, n - needed, **dict(zip(named, tails, strict=True)))
    return tails


# ---------------------------------------------------------------- point estimates


def _annualise(variance: float, periods_per_year: float) -> float:
    # Rounding can leave a variance of exactly-zero moves at -1e-20; it is zero.
    return math.sqrt(max(variance, 0.0) * periods_per_year)


def _sample_var(x: FloatArray) -> float:
    n = len(x)
    d = x - x.sum() / n
    return float(d @ d) / (n - 1)


def close_to_close(
    close: FloatArray, window: int, periods_per_year: float, *, checked: bool = False
) -> float:
    """Return the annualised sample std (ddof=1) of the last ``window`` log close-to-close returns.

    Needs ``window + 1`` closes.
    """
    _check_params("close_to_close", window, periods_per_year)
    (c,) = _tail("close_to_close", window, window + 1, checked, close=close)
    return _annualise(_sample_var(np.log(c[1:] / c[:-1])), periods_per_year)


@lru_cache(maxsize=64)
def _ewma_weights(window: int, lam: float) -> FloatArray:
    """Weights of r_0² .. r_{w-1}² (oldest first): RiskMetrics' exponential weights truncated to
    the window and normalised, ``lam^(w-1-t) · (1-lam) / (1-lam^w)``; they sum to 1.

    The finite-window form of the exponential average (pandas' ``ewm(alpha=1-lam, adjust=True)``
    weighs the same way). Not the recursion seeded with the window's first squared return
    (var_0 = r_0²): that gave the one oldest return the whole weight of the truncated tail,
    lam^(w-1), 0.85 at lam 0.999 and window 168, so the estimate jumped hour to hour with
    whichever return had just become the oldest. Normalised, lam -> 1 tends to the
    equal-weighted mean of the squared returns, as a trader raising lam expects.
    """
    weights = lam ** np.arange(window - 1, -1, -1, dtype=np.float64)
    weights /= weights.sum()
    weights.setflags(write=False)  # shared through the cache
    return weights


def ewma(
    close: FloatArray,
    window: int,
    periods_per_year: float,
    lam: float = 0.94,
    *,
    checked: bool = False,
) -> float:
    """Return the annualised RiskMetrics EWMA volatility of the last ``window`` log returns.

    Zero-mean variance ``Σ w_t·r_t²`` with the exponential weights ``w_t ∝ lam^(window-1-t)``
    (the newest return weighs most) normalised to sum to 1 over the window
    (:func:`_ewma_weights`): a function of the window alone, so point and rolling agree and no
    history outside the window leaks in. At lam 0.94 the newest 50 returns carry over 95 % of the
    weight whatever the window; as lam approaches 1 the estimate tends to the equal-weighted
    one. Needs ``window + 1`` closes.
    """
    _check_params("ewma", window, periods_per_year)
    _check_lam("ewma", lam)
    (c,) = _tail("ewma", window, window + 1, checked, close=close)
    r = np.log(c[1:] / c[:-1])
    return _annualise(float((r * r) @ _ewma_weights(window, float(lam))), periods_per_year)


def parkinson(
    high: FloatArray,
    low: FloatArray,
    window: int,
    periods_per_year: float,
    *,
    checked: bool = False,
) -> float:
    """Return the annualised Parkinson (1980) high-low volatility over the last ``window`` candles.

    ``var = mean(ln(H/L)²) / (4·ln 2)``. Needs ``window`` candles.
    """
    _check_params("parkinson", window, periods_per_year)
    h, lo = _tail("parkinson", window, window, checked, high=high, low=low)
    u = np.log(h / lo)
    return _annualise(float(u @ u) * _PARKINSON / window, periods_per_year)


def garman_klass(
    open: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    window: int,
    periods_per_year: float,
    *,
    checked: bool = False,
) -> float:
    """Return the annualised Garman-Klass (1980) volatility over the last ``window`` candles.

    ``var = mean(0.5·ln(H/L)² - (2·ln 2 - 1)·ln(C/O)²)``. Needs ``window`` candles.
    """
    _check_params("garman_klass", window, periods_per_year)
    o, h, lo, c = _tail(
        "garman_klass", window, window, checked, open=open, high=high, low=low, close=close
    )
    u, oc = np.log(h / lo), np.log(c / o)
    return _annualise((0.5 * float(u @ u) - _GK_OC * float(oc @ oc)) / window, periods_per_year)


def _yz_k(window: int) -> float:
    return 0.34 / (1.34 + (window + 1) / (window - 1))


def yang_zhang(
    open: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    window: int,
    periods_per_year: float,
    *,
    checked: bool = False,
) -> float:
    """Return the annualised Yang-Zhang (2000) volatility over the last ``window`` candles.

    ``var = var(ln(O_t/C_{t-1})) + k·var(ln(C/O)) + (1-k)·RS`` with sample variances (ddof=1),
    Rogers-Satchell ``RS = mean(ln(H/C)·ln(H/O) + ln(L/C)·ln(L/O))`` and
    ``k = 0.34 / (1.34 + (n+1)/(n-1))``. Needs ``window + 1`` candles (the first supplies only
    the previous close of the first overnight return).
    """
    _check_params("yang_zhang", window, periods_per_year)
    o, h, lo, c = _tail(
        "yang_zhang", window, window + 1, checked, open=open, high=high, low=low, close=close
    )
    o1 = o[1:]
    oc = np.log(c[1:] / o1)
    ho, lo_o = np.log(h[1:] / o1), np.log(lo[1:] / o1)
    # ln(H/C) = ln(H/O) - ln(C/O), likewise for L: two logs fewer.
    rs = float(ho @ (ho - oc) + lo_o @ (lo_o - oc)) / window
    k = _yz_k(window)
    var = _sample_var(np.log(o1 / c[:-1])) + k * _sample_var(oc) + (1.0 - k) * rs
    return _annualise(var, periods_per_year)


def _true_range(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """True range of candles 1..n-1.

    max(H-L, |H-C_prev|, |L-C_prev|) equals max(H, C_prev) - min(L, C_prev) when H >= L.
    """
    prev = close[:-1]
    return np.maximum(high[1:], prev) - np.minimum(low[1:], prev)


@functools.lru_cache(maxsize=64)
def _atr_weights(window: int, k: int) -> FloatArray:
    decay = (window - 1) / window
    weights = decay ** np.arange(k - 1, -1, -1, dtype=np.float64)
    weights.flags.writeable = False
    return weights


def atr(
    high: FloatArray, low: FloatArray, close: FloatArray, window: int, *, checked: bool = False
) -> float:
    """Return Wilder's Average True Range (price units) at the last candle.

    Uses every candle given: candle 0 supplies only its close (true range needs the previous
    close); the average is seeded with the simple mean of the first ``window`` true ranges
    (candles 1..window), then ``atr = (atr·(window-1) + tr) / window`` through the last candle.
    Needs ``window + 1`` candles. The seed's weight after k more candles is
    ``((window-1)/window)^k`` (about 2 % after 4·window), so pass several windows of history.
    """
    _check_params("atr", window, None)
    if checked:  # the caller vouches for valid float64 candles (validated at load)
        h, lo, c = high, low, close
        _need("atr", window, window + 1, len(c))
    else:
        h, lo, c = _arrays("atr", high=high, low=low, close=close)
        _need("atr", window, window + 1, len(c))
        _check_prices("atr", 0, high=h, low=lo, close=c)
    tr = _true_range(h, lo, c)
    decay = (window - 1) / window
    rest = tr[window:]
    m = len(rest)
    # The recursion unrolled: decay^m·seed + Σ decay^(m-1-k)·rest_k / window (one dot product).
    # Terms older than `_ATR_HORIZON` weigh < 1e-18 and are skipped (subnormal powers are slow).
    k = min(m, math.ceil(_ATR_HORIZON / -math.log(decay)))
    weights = _atr_weights(window, k)
    return float(decay**m * (tr[:window].sum() / window) + (rest[m - k :] @ weights) / window)


def estimate(
    name: str,
    open: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    window: int,
    periods_per_year: float,
    lam: float = 0.94,
    *,
    checked: bool = False,
) -> float:
    """Return the annualised volatility from estimator ``name`` (one of :data:`ESTIMATORS`).

    ``checked=True`` skips the per-call validation of the prices: only for candles already
    validated where they were read (data files, the exchange adapter), in the engine's hot path.
    """
    if name == "close_to_close":
        return close_to_close(close, window, periods_per_year, checked=checked)
    if name == "ewma":
        return ewma(close, window, periods_per_year, lam, checked=checked)
    if name == "parkinson":
        return parkinson(high, low, window, periods_per_year, checked=checked)
    if name == "garman_klass":
        return garman_klass(open, high, low, close, window, periods_per_year, checked=checked)
    if name == "yang_zhang":
        return yang_zhang(open, high, low, close, window, periods_per_year, checked=checked)
    raise ValueError(f"unknown volatility estimator {name!r}; valid: {', '.join(ESTIMATORS)}")
