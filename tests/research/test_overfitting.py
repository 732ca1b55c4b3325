"""The deflated Sharpe ratio (Bailey & López de Prado 2014) against a worked example computed
here independently: the normal CDF from math.erf and its inverse by bisection."""

from __future__ import annotations

import math

import pytest

from bot.research.evaluate import daily_stats
from bot.research.overfitting import deflated_sharpe, expected_max_sharpe, probabilistic_sharpe


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _inv(p: float) -> float:
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if _cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def test_worked_example() -> None:
    # The paper's setting: an annualised Sharpe ratio of 2.5 found among N = 100 trials whose
    # annualised Sharpe ratios have variance 0.5, over T = 1250 daily returns (five years of
    # 250 days) with skewness -3 and kurtosis 10. Per-period figures: divide by sqrt(250)
    # (the variance by 250).
    periods = 250
    sr = 2.5 / math.sqrt(periods)
    var = 0.5 / periods
    n, t, skew, kurt = 100, 1250, -3.0, 10.0
    gamma = 0.5772156649015329
    sr0 = math.sqrt(var) * ((1 - gamma) * _inv(1 - 1 / n) + gamma * _inv(1 - 1 / (n * math.e)))
    dsr = _cdf((sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    # The paper's published figures for this example: SR0 = 0.1132 per period, DSR = 0.9004.
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    assert expected_max_sharpe(n, var) == pytest.approx(sr0, rel=1e-9)
    assert probabilistic_sharpe(sr, sr0, t, skew, kurt) == pytest.approx(dsr, rel=1e-9)
    assert dsr == pytest.approx(0.9004, abs=5e-4)

    # The same through the trials' own Sharpe ratios: two values whose sample variance is var.
    mean = 0.0
    trials = [mean - math.sqrt(var / 2), mean + math.sqrt(var / 2)]
    value, got_sr0 = deflated_sharpe(sr, trials, t, skew, kurt)
    expected0 = math.sqrt(var) * ((1 - gamma) * _inv(0.5) + gamma * _inv(1 - 1 / (2 * math.e)))
    assert got_sr0 == pytest.approx(expected0, rel=1e-9)
    assert 0.0 < value < 1.0


def test_more_trials_deflate_more() -> None:
    values = [expected_max_sharpe(n, 0.01) for n in (2, 10, 100, 1000)]
    assert values == sorted(values)
    assert expected_max_sharpe(1, 0.01) == 0.0


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(ValueError, match="at least 2 returns"):
        probabilistic_sharpe(0.1, 0.0, 1, 0.0, 3.0)


def test_daily_stats_of_normal_like_returns() -> None:
    r = [0.01, -0.01, 0.02, -0.02, 0.0] * 20
    stats = daily_stats(r)
    assert stats["n_days"] == 100
    assert stats["daily_sharpe"] == pytest.approx(0.0, abs=1e-12)
    assert stats["daily_skew"] == pytest.approx(0.0, abs=1e-9)
    # kurtosis of {±1, ±2, 0} equally weighted: E[x^4]/E[x^2]^2 = (2+32)/5 / (10/5)^2
    assert stats["daily_kurtosis"] == pytest.approx(34 / 5 / 4)
