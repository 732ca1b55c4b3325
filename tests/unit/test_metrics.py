"""Tests for bot.backtest.metrics against hand computations and a loop-based implementation."""

from __future__ import annotations

import itertools
import math
import statistics
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.backtest import metrics
from bot.backtest.metrics import (
    DAY_MS,
    YEAR_MS,
    cagr,
    calmar,
    daily_closes,
    drawdown_series,
    max_drawdown,
    sharpe,
    sortino,
    summarize,
    total_return,
)

HOUR_MS = 3_600_000
T0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1000)  # a UTC midnight


def _ts(*offsets_h: float) -> np.ndarray:
    return np.array([T0 + int(h * HOUR_MS) for h in offsets_h], dtype=np.int64)


def _daily_ts(n: int) -> np.ndarray:
    """One sample per day at 23:00 UTC, n consecutive days."""
    return np.array([T0 + d * DAY_MS + 23 * HOUR_MS for d in range(n)], dtype=np.int64)


# --- a second implementation, written with datetime and loops, for cross-checks -----------------


def _ref_daily_returns(equity: list[float], ts_ms: list[int]) -> list[float]:
    closes: dict[date, float] = {}
    for e, t in zip(equity, ts_ms, strict=True):
        closes[datetime.fromtimestamp(t / 1000, tz=UTC).date()] = e  # later samples overwrite
    days = sorted(closes)
    out = []
    for prev, cur in itertools.pairwise(days):
        if cur - prev == timedelta(days=1):
            out.append(closes[cur] / closes[prev] - 1.0)
    return out


def _ref_sharpe(equity: list[float], ts_ms: list[int]) -> float:
    r = _ref_daily_returns(equity, ts_ms)
    if len(r) < 2 or statistics.stdev(r) < 1e-12:
        return 0.0
    return statistics.mean(r) / statistics.stdev(r) * math.sqrt(365)


def _ref_sortino(equity: list[float], ts_ms: list[int]) -> float:
    r = _ref_daily_returns(equity, ts_ms)
    if len(r) < 2:
        return 0.0
    down = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / len(r))
    if down < 1e-12:
        return 0.0
    return statistics.mean(r) / down * math.sqrt(365)


# --- drawdown ------------------------------------------------------------------------------------


def test_max_drawdown_from_running_peak() -> None:
    # Peak 110, trough 99: (110 - 99) / 110 = 0.1. The later high at 120 does not undo it.
    assert max_drawdown(np.array([100.0, 110.0, 99.0, 120.0])) == pytest.approx(0.1)


def test_drawdown_series_values() -> None:
    dd = drawdown_series(np.array([100.0, 110.0, 99.0, 120.0, 90.0]))
    np.testing.assert_allclose(dd, [0.0, 0.0, 0.1, 0.0, 0.25])


def test_max_drawdown_is_zero_for_rising_equity() -> None:
    assert max_drawdown(np.array([1.0, 2.0, 2.0, 3.0])) == 0.0


def test_max_drawdown_returns_python_float() -> None:
    assert type(max_drawdown(np.array([2.0, 1.0]))) is float


@given(st.lists(st.floats(min_value=1e-3, max_value=1e9), min_size=1, max_size=60))
def test_drawdown_of_positive_equity_is_a_fraction(values: list[float]) -> None:
    dd = drawdown_series(np.array(values))
    assert ((dd >= 0.0) & (dd < 1.0)).all()
    # Brute force: worst fall from any earlier point.
    worst = max(
        1 - values[j] / values[i] for i in range(len(values)) for j in range(i, len(values))
    )
    assert max_drawdown(np.array(values)) == pytest.approx(max(worst, 0.0), abs=1e-12)


# --- returns -------------------------------------------------------------------------------------


def test_total_return() -> None:
    assert total_return(np.array([100.0, 110.0, 99.0, 120.0])) == pytest.approx(0.2)


def test_two_year_doubling_cagr_is_sqrt2_minus_1() -> None:
    eq = np.array([100.0, 150.0, 200.0])
    ts = np.array([0, YEAR_MS, 2 * YEAR_MS], dtype=np.int64)
    assert cagr(eq, ts) == pytest.approx(math.sqrt(2.0) - 1.0, rel=1e-12)


def test_half_year_cagr() -> None:
    # +10 % in half a 365-day year compounds to 1.1 ** 2 - 1 = 0.21 per year.
    ts = np.array([T0, T0 + YEAR_MS // 2], dtype=np.int64)
    assert cagr(np.array([100.0, 110.0]), ts) == pytest.approx(0.21, rel=1e-12)


def test_cagr_zero_span_is_zero() -> None:
    assert cagr(np.array([100.0, 150.0]), np.array([T0, T0], dtype=np.int64)) == 0.0
    assert cagr(np.array([100.0]), np.array([T0], dtype=np.int64)) == 0.0


@pytest.mark.parametrize("final", [0.0, -25.0])
def test_ruined_account_returns_minus_one(final: float) -> None:
    eq = np.array([100.0, 40.0, final])
    ts = _ts(0, 24, 48)
    assert total_return(eq) == -1.0
    assert cagr(eq, ts) == -1.0


def test_cagr_overflow_is_infinite() -> None:
    # Doubling in one hour annualises to 2 ** 8760, which is not a float.
    assert cagr(np.array([100.0, 200.0]), _ts(0, 1)) == math.inf


# --- daily closes --------------------------------------------------------------------------------


def test_daily_closes_take_last_sample_of_each_utc_day_and_skip_empty_days() -> None:
    ts = _ts(0, 5, 23.99, 24, 30, 72)  # day 0 three samples, day 1 two, day 2 none, day 3 one
    eq = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    days, closes = daily_closes(eq, ts)
    np.testing.assert_array_equal(days, [T0, T0 + DAY_MS, T0 + 3 * DAY_MS])
    np.testing.assert_array_equal(closes, [3.0, 5.0, 6.0])
    assert days.dtype == np.int64


# --- sharpe / sortino ----------------------------------------------------------------------------


def test_sharpe_and_sortino_by_hand() -> None:
    # Daily returns +10 %, -10 %, +10 %: mean 1/30.
    # Sample sd: sqrt(((1/15)^2 + (2/15)^2 + (1/15)^2) / 2) = sqrt(0.0133333...) = 0.1154700...
    # Downside deviation: sqrt(0.01 / 3) = 0.0577350...
    eq = np.array([100.0, 110.0, 99.0, 108.9])
    ts = _daily_ts(4)
    assert sharpe(eq, ts) == pytest.approx((1 / 30) / 0.11547005383792516 * math.sqrt(365))
    assert sortino(eq, ts) == pytest.approx((1 / 30) / 0.05773502691896258 * math.sqrt(365))


def test_sharpe_uses_only_day_closes() -> None:
    # Intraday swings do not matter; only the 23:00 values (the last of each day) do.
    ts = _ts(1, 12, 23, 25, 40, 47, 49, 60, 71)
    eq = np.array([50.0, 500.0, 100.0, 1.0, 900.0, 110.0, 3.0, 700.0, 99.0])
    assert sharpe(eq, ts) == pytest.approx(sharpe(np.array([100.0, 110.0, 99.0]), _daily_ts(3)))


def test_sharpe_periods_per_year_scales_by_sqrt() -> None:
    eq = np.array([100.0, 110.0, 99.0, 108.9])
    ts = _daily_ts(4)
    assert sharpe(eq, ts, periods_per_year=252) == pytest.approx(
        sharpe(eq, ts) * math.sqrt(252 / 365)
    )


def test_sortino_without_losing_days_is_zero() -> None:
    eq = np.array([100.0, 101.0, 103.0, 103.0, 107.0])
    ts = _daily_ts(5)
    assert sortino(eq, ts) == 0.0
    assert sharpe(eq, ts) > 0.0


def test_constant_growth_has_zero_deviation_so_sharpe_is_zero() -> None:
    eq = 100.0 * 1.01 ** np.arange(10)
    assert sharpe(eq, _daily_ts(10)) == 0.0


@pytest.mark.parametrize("n_days", [1, 2])
def test_too_few_days_gives_zero(n_days: int) -> None:
    eq = np.linspace(100.0, 80.0, n_days * 24)
    ts = T0 + HOUR_MS * np.arange(n_days * 24, dtype=np.int64)
    assert sharpe(eq, ts) == 0.0
    assert sortino(eq, ts) == 0.0


def test_no_return_across_a_missing_day() -> None:
    # Days 0, 1, 2 then a gap then days 5, 6. Returns: d1/d0, d2/d1, d6/d5, not d5/d2.
    ts = np.array([T0 + d * DAY_MS for d in (0, 1, 2, 5, 6)], dtype=np.int64)
    eq = np.array([100.0, 110.0, 99.0, 500.0, 450.0])
    r = [0.1, -0.1, -0.1]
    expected = statistics.mean(r) / statistics.stdev(r) * math.sqrt(365)
    assert sharpe(eq, ts) == pytest.approx(expected)


def test_ruin_counts_as_minus_100_percent_and_stops() -> None:
    ts = _daily_ts(5)
    eq = np.array([100.0, 50.0, -10.0, -5.0, -1.0])  # returns: -0.5, then -1 (clipped), then stop
    r = [-0.5, -1.0]
    assert sharpe(eq, ts) == pytest.approx(
        statistics.mean(r) / statistics.stdev(r) * math.sqrt(365)
    )


@settings(max_examples=50)
@given(
    st.lists(st.floats(min_value=-0.05, max_value=0.05), min_size=2, max_size=400),
    st.integers(min_value=0, max_value=23),
)
def test_sharpe_sortino_match_reference(hourly: list[float], start_hour: int) -> None:
    eq = 1000.0 * np.cumprod(1.0 + np.array(hourly))
    ts = T0 + HOUR_MS * (start_hour + np.arange(len(hourly), dtype=np.int64))
    assert sharpe(eq, ts) == pytest.approx(_ref_sharpe(list(eq), list(ts)), rel=1e-9, abs=1e-9)
    assert sortino(eq, ts) == pytest.approx(_ref_sortino(list(eq), list(ts)), rel=1e-9, abs=1e-9)


# --- calmar / summary ----------------------------------------------------------------------------


def test_calmar_is_cagr_over_drawdown() -> None:
    eq = np.array([100.0, 110.0, 99.0, 200.0])
    ts = np.array([0, YEAR_MS // 2, YEAR_MS, 2 * YEAR_MS], dtype=np.int64)
    assert calmar(eq, ts) == pytest.approx((math.sqrt(2.0) - 1.0) / 0.1)


def test_calmar_without_drawdown_is_zero() -> None:
    assert calmar(np.array([100.0, 200.0]), np.array([0, YEAR_MS], dtype=np.int64)) == 0.0


def test_summarize_keys_and_values() -> None:
    eq = np.array([100.0, 110.0, 99.0, 108.9])
    ts = _daily_ts(4)
    s = summarize(eq, ts)
    assert list(s) == ["total_return", "cagr", "max_drawdown", "sharpe", "sortino", "calmar"]
    assert all(type(v) is float for v in s.values())
    assert s["total_return"] == pytest.approx(0.089)
    assert s["max_drawdown"] == pytest.approx(0.1)
    assert s["sharpe"] == sharpe(eq, ts)
    assert s["sortino"] == sortino(eq, ts)
    assert s["calmar"] == pytest.approx(s["cagr"] / 0.1)


# --- bad input -----------------------------------------------------------------------------------


def test_length_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"same length as equity.*\(2,\).*\(3,\)"):
        sharpe(np.array([1.0, 2.0, 3.0]), _ts(0, 1))


def test_non_finite_equity_names_the_index() -> None:
    with pytest.raises(ValueError, match="finite, got nan at index 2"):
        max_drawdown(np.array([1.0, 2.0, np.nan]))


def test_non_positive_start_is_rejected() -> None:
    # Returns are undefined from a start at or below zero; the drawdown is not (since the
    # simulation audit): everything is lost until a positive equity is seen.
    with pytest.raises(ValueError, match=r"start positive, got 0\.0"):
        total_return(np.array([0.0, 1.0]))
    assert drawdown_series(np.array([0.0, -5.0, 2.0, 1.0])).tolist() == [1.0, 1.0, 0.0, 0.5]


def test_decreasing_timestamps_name_the_index() -> None:
    with pytest.raises(ValueError, match=r"non-decreasing.*index 2"):
        cagr(np.array([1.0, 2.0, 3.0]), np.array([T0, T0 + 10, T0 + 5], dtype=np.int64))


def test_float_timestamps_are_rejected() -> None:
    with pytest.raises(ValueError, match="integer epoch milliseconds"):
        daily_closes(np.array([1.0, 2.0]), np.array([0.0, 1.0]))


def test_empty_equity_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        total_return(np.array([]))


def test_public_api() -> None:
    assert set(metrics.__all__) == {
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
    }


def test_drawdown_series_from_a_starting_value() -> None:
    # The first sample already lost 2 % of the 100 the account started with.
    dd = drawdown_series(np.array([98.0, 105.0, 94.5]), start=100.0)
    np.testing.assert_allclose(dd, [0.02, 0.0, 0.1])
    # A start below the first sample changes nothing.
    np.testing.assert_allclose(
        drawdown_series(np.array([98.0, 90.0]), start=50.0), [0.0, 1 - 90 / 98]
    )


def test_the_opening_value_is_the_close_before_the_first_day() -> None:
    # A curve that starts with the starting balance at 00:00 and whose ticks follow on the same
    # day: the balance is the first day's opening, so the first day's return (-10 %) counts.
    hour = 3_600_000
    ts = np.r_[0, np.arange(0, 4 * 24 * hour, hour)].astype(np.int64) + DAY_MS * 20_000
    eq = np.r_[100.0, np.full(24, 90.0), np.full(24, 91.0), np.full(24, 92.0), np.full(24, 93.0)]
    expected = [90 / 100 - 1, 91 / 90 - 1, 92 / 91 - 1, 93 / 92 - 1]
    mean, sd = float(np.mean(expected)), float(np.std(expected, ddof=1))
    assert sharpe(eq, ts, opening=True) == pytest.approx(mean / sd * math.sqrt(365))
    assert sharpe(eq, ts, opening=True) < 0 < sharpe(eq, ts)  # without: three +1 % days
    assert summarize(eq, ts, opening=True)["sortino"] < 0
    assert sharpe(eq[:1], ts[:1], opening=True) == 0.0
