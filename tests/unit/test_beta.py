"""Beta estimation against an independent computation (numpy least squares) on fixed data."""

from __future__ import annotations

import numpy as np
import pytest

from bot.stats.beta import aligned_log_returns, ols_beta, rolling_beta, shrink_and_clip

HOUR = 3_600_000


def _market(n: int = 400, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    hedge_r = rng.normal(0, 0.01, n)
    asset_r = 0.0002 + 1.6 * hedge_r + rng.normal(0, 0.006, n)
    ts = np.arange(n + 1, dtype=np.int64) * HOUR
    hedge = 50_000 * np.exp(np.concatenate([[0.0], np.cumsum(hedge_r)]))
    asset = 2_500 * np.exp(np.concatenate([[0.0], np.cumsum(asset_r)]))
    return ts, asset, hedge


def test_ols_beta_matches_numpy_lstsq_on_fixed_data() -> None:
    ts, asset, hedge = _market()
    window = 168
    ra = np.diff(np.log(asset))[-window:]
    rh = np.diff(np.log(hedge))[-window:]
    design = np.column_stack([np.ones(window), rh])
    (_, slope), *_ = np.linalg.lstsq(design, ra, rcond=None)
    est = rolling_beta(ts, asset, ts, hedge, window=window, shrinkage=0.0, lo=-10, hi=10)
    assert est.n == window
    assert est.raw == pytest.approx(float(slope), rel=1e-12)
    assert est.beta == pytest.approx(float(slope), rel=1e-12)
    assert 1.4 < est.raw < 1.8  # the generating beta is 1.6


def test_shrinkage_moves_toward_one_and_clips() -> None:
    ts, asset, hedge = _market()
    raw = rolling_beta(ts, asset, ts, hedge, window=168, shrinkage=0, lo=0, hi=5).raw
    half = rolling_beta(ts, asset, ts, hedge, window=168, shrinkage=0.5, lo=0, hi=5)
    assert half.beta == pytest.approx(0.5 * raw + 0.5, rel=1e-12)
    clipped = rolling_beta(ts, asset, ts, hedge, window=168, shrinkage=0, lo=0, hi=1.2)
    assert clipped.beta == 1.2
    assert shrink_and_clip(float("nan"), 0.3, 0.0, 3.0) == 1.0  # no estimate: the market's beta


def test_returns_are_aligned_on_common_timestamps() -> None:
    ts, asset, hedge = _market(50)
    # The asset misses one candle: returns are taken on the timestamps both series have.
    keep = np.ones(len(ts), dtype=bool)
    keep[20] = False
    ra, rh = aligned_log_returns(ts[keep], asset[keep], ts, hedge, 100)
    assert len(ra) == len(rh) == len(ts) - 2
    common = ts[keep]
    expected = np.diff(np.log(hedge[np.searchsorted(ts, common)]))
    np.testing.assert_allclose(rh, expected)


def test_no_variance_gives_no_raw_estimate() -> None:
    flat = np.full(30, 100.0)
    assert np.isnan(ols_beta(np.diff(np.log(flat)), np.diff(np.log(flat))))


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        ols_beta(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="shrinkage"):
        shrink_and_clip(1.0, 1.5, 0, 3)
    ts = np.arange(3, dtype=np.int64)
    with pytest.raises(ValueError, match="positive"):
        aligned_log_returns(ts, np.array([1.0, 0.0, 2.0]), ts, np.ones(3), 5)
