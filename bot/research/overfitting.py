"""The deflated Sharpe ratio: how likely the best of N tried strategies has real skill.

Bailey, D. H. & López de Prado, M. (2014), "The Deflated Sharpe Ratio: Correcting for Selection
Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5), 94-107.

With ``N`` independent trials whose Sharpe ratios (per period, not annualised) have variance
``V``, the expected maximum Sharpe ratio of N skill-less strategies is

    SR0 = sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))   (g: Euler-Mascheroni)

and the deflated Sharpe ratio of the selected strategy (Sharpe SR over T returns with skewness
s3 and kurtosis s4, not excess) is the probabilistic Sharpe ratio against SR0:

    DSR = Z( (SR - SR0) * sqrt(T - 1) / sqrt(1 - s3 * SR + (s4 - 1) / 4 * SR^2) ).

A DSR near 1 says the selection survives the number of trials; below 0.95 it does not at the
usual 5 % level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

EULER_GAMMA = 0.5772156649015329
_Z = NormalDist()


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """SR0: the expected best per-period Sharpe ratio of ``n_trials`` trials without skill."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if variance < 0:
        raise ValueError(f"variance of the trials' Sharpe ratios must be >= 0, got {variance}")
    if n_trials == 1 or variance == 0:
        return 0.0
    g = EULER_GAMMA
    a = _Z.inv_cdf(1.0 - 1.0 / n_trials)
    b = _Z.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(variance) * ((1.0 - g) * a + g * b)


def probabilistic_sharpe(
    sharpe: float, benchmark: float, n_returns: int, skew: float, kurtosis: float
) -> float:
    """P(true Sharpe > ``benchmark``) given the observed per-period Sharpe over ``n_returns``."""
    if n_returns < 2:
        raise ValueError(f"need at least 2 returns, got {n_returns}")
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if denom <= 0:
        raise ValueError(
            f"non-normality term 1 - skew*SR + (kurt-1)/4*SR^2 = {denom:.4g} is not positive"
        )
    return _Z.cdf((sharpe - benchmark) * math.sqrt(n_returns - 1) / math.sqrt(denom))


def deflated_sharpe(
    sharpe: float,
    trial_sharpes: Sequence[float],
    n_returns: int,
    skew: float,
    kurtosis: float,
) -> tuple[float, float]:
    """(DSR, SR0) of the selected per-period ``sharpe`` among ``trial_sharpes`` (all trials,
    the selected one included)."""
    n = len(trial_sharpes)
    if n < 1:
        raise ValueError("no trials")
    mean = sum(trial_sharpes) / n
    var = sum((x - mean) ** 2 for x in trial_sharpes) / (n - 1) if n > 1 else 0.0
    sr0 = expected_max_sharpe(n, var)
    return probabilistic_sharpe(sharpe, sr0, n_returns, skew, kurtosis), sr0
