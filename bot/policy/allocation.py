"""Risk-weighted allocation across contracts: inverse volatility and equal risk contribution.

Weights are fractions of account equity (notional / equity), before any gross cap. Statistics
are numpy floats; callers convert the result to Decimal.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def inverse_vol_weights(vols: FloatArray) -> FloatArray:
    """Weights proportional to 1/vol, summing to 1."""
    if np.any(vols <= 0) or not np.all(np.isfinite(vols)):
        raise ValueError(f"volatilities must be finite and > 0 (got {vols.tolist()})")
    inv = 1.0 / vols
    return np.asarray(inv / inv.sum(), dtype=np.float64)


def erc_weights(cov: FloatArray, *, tol: float = 1e-10, max_iter: int = 500) -> FloatArray:
    """Equal-risk-contribution weights (sum 1, all > 0) for covariance ``cov``.

    Each contract's risk contribution ``w_i (cov w)_i`` is equal. Solved by cyclical coordinate
    descent on ``0.5 w'cov w - (1/n) sum log w_i`` (Griveau-Billion, Richard, Roncalli 2013),
    whose minimiser normalised to sum 1 is the ERC portfolio.
    """
    n = cov.shape[0]
    if cov.shape != (n, n) or not np.all(np.isfinite(cov)):
        raise ValueError("covariance must be a finite square matrix")
    diag = np.diag(cov)
    if np.any(diag <= 0):
        raise ValueError("covariance has a non-positive variance")
    b = 1.0 / n
    w = 1.0 / np.sqrt(diag)
    w = w / w.sum()
    for _ in range(max_iter):
        previous = w.copy()
        for i in range(n):
            # Solve d/dw_i: cov_ii w_i + (cov w)_i - cov_ii w_i - b / w_i = 0 for w_i > 0.
            others = float(cov[i] @ w - cov[i, i] * w[i])
            w[i] = (-others + np.sqrt(others * others + 4.0 * cov[i, i] * b)) / (2.0 * cov[i, i])
        if np.max(np.abs(w - previous)) < tol * np.max(np.abs(w)):
            break
    return np.asarray(w / w.sum(), dtype=np.float64)


def risk_contributions(weights: FloatArray, cov: FloatArray) -> FloatArray:
    """Each contract's share of portfolio variance (sums to 1)."""
    marginal = cov @ weights
    contrib = weights * marginal
    return np.asarray(contrib / contrib.sum(), dtype=np.float64)


def scale_to_target(
    weights: FloatArray, cov_annual: FloatArray, target_vol: float, max_gross: float
) -> FloatArray:
    """Scale weights so portfolio volatility equals ``target_vol``, then cap the gross sum."""
    port_vol = float(np.sqrt(weights @ cov_annual @ weights))
    scaled = weights * (target_vol / port_vol) if port_vol > 0 else weights * 0.0
    gross = float(np.abs(scaled).sum())
    if gross > max_gross > 0:
        scaled = scaled * (max_gross / gross)
    return np.asarray(scaled, dtype=np.float64)
