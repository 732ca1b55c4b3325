"""Beta of a contract to the hedge instrument: rolling regression of log returns, shrunk toward 1.

``beta = cov(r_asset, r_hedge) / var(r_hedge)`` over the last ``window`` common returns (the
ordinary least-squares slope with an intercept). A raw estimate from a short window is noisy, and
in a sell-off every crypto contract moves with the market: the estimate is shrunk toward 1
(``shrunk = (1 - shrinkage) * raw + shrinkage * 1``) and clipped to ``[lo, hi]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BetaEstimate:
    raw: float  # the OLS slope (nan when there is no variance or too little data)
    beta: float  # shrunk toward 1 and clipped: the figure the hedge uses
    n: int  # returns used

    def describe(self) -> str:
        raw = "n/a" if not np.isfinite(self.raw) else f"{self.raw:.2f}"
        return f"beta {self.beta:.2f} (raw {raw}, {self.n} returns)"


def ols_beta(asset_returns: FloatArray, hedge_returns: FloatArray) -> float:
    """Slope of ``asset ~ a + b * hedge``; nan when the hedge returns have no variance."""
    if len(asset_returns) != len(hedge_returns):
        raise ValueError(
            f"return series differ in length: {len(asset_returns)} vs {len(hedge_returns)}"
        )
    if len(asset_returns) < 2:
        return float("nan")
    x = hedge_returns - hedge_returns.mean()
    var = float(np.dot(x, x))
    if var <= 0.0:
        return float("nan")
    return float(np.dot(x, asset_returns - asset_returns.mean()) / var)


def shrink_and_clip(raw: float, shrinkage: float, lo: float, hi: float) -> float:
    """``(1 - shrinkage) * raw + shrinkage``, clipped to [lo, hi]; 1 (clipped) when raw is nan."""
    if not 0.0 <= shrinkage <= 1.0:
        raise ValueError(f"shrinkage must be within [0, 1], got {shrinkage}")
    if lo > hi:
        raise ValueError(f"beta bounds reversed: {lo} > {hi}")
    value = 1.0 if not np.isfinite(raw) else (1.0 - shrinkage) * raw + shrinkage
    return float(min(max(value, lo), hi))


def aligned_log_returns(
    ts_a: IntArray, close_a: FloatArray, ts_b: IntArray, close_b: FloatArray, window: int
) -> tuple[FloatArray, FloatArray]:
    """Log returns of both series over their last ``window`` returns on common timestamps."""
    k = window + 1
    if np.array_equal(ts_a[-k:], ts_b[-k:]):
        ca, cb = close_a[-k:], close_b[-k:]  # the usual case: the same candles, no gap
    else:
        common = np.intersect1d(ts_a, ts_b, assume_unique=True)[-k:]
        ca, cb = close_a[np.searchsorted(ts_a, common)], close_b[np.searchsorted(ts_b, common)]
    if len(ca) and (np.any(ca <= 0) or np.any(cb <= 0)):
        raise ValueError("close prices must be positive to take log returns")
    return np.diff(np.log(ca)), np.diff(np.log(cb))


def min_returns(window: int) -> int:
    """The fewest common returns a beta over ``window`` is regressed on (half the window, 2 at
    least); with fewer it is the shrinkage target."""
    return max(2, window // 2)


def rolling_beta(
    ts_asset: IntArray,
    close_asset: FloatArray,
    ts_hedge: IntArray,
    close_hedge: FloatArray,
    *,
    window: int,
    shrinkage: float,
    lo: float,
    hi: float,
) -> BetaEstimate:
    """Beta of the asset to the hedge over the last ``window`` common returns."""
    ra, rh = aligned_log_returns(ts_asset, close_asset, ts_hedge, close_hedge, window)
    raw = ols_beta(ra, rh) if len(ra) >= min_returns(window) else float("nan")
    return BetaEstimate(raw, shrink_and_clip(raw, shrinkage, lo, hi), len(ra))
