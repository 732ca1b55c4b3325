"""Volatility estimators and ATR checked against hand-worked values and plain-Python references."""

from __future__ import annotations

import math
import statistics

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.stats import (
    ESTIMATORS,
    atr,
    close_to_close,
    estimate,
    ewma,
    garman_klass,
    parkinson,
    parse_timeframe,
    periods_per_year,
    rolling,
    rolling_atr,
    yang_zhang,
)

Arr = npt.NDArray[np.float64]

# Twelve hand-typed 1h candles (open, high, low, close), oldest first, low <= open, close <= high.
CANDLES = [
    (100.0, 101.5, 99.2, 100.8),
    (100.9, 102.3, 100.1, 101.7),
    (101.6, 101.9, 99.8, 100.2),
    (100.1, 100.6, 98.4, 98.9),
    (99.2, 100.4, 98.7, 100.3),
    (100.3, 103.1, 100.0, 102.9),
    (102.8, 103.5, 101.6, 101.9),
    (102.0, 102.2, 100.5, 100.9),
    (100.7, 101.8, 100.2, 101.5),
    (101.5, 104.2, 101.1, 103.8),
    (103.9, 104.0, 102.1, 102.4),
    (102.3, 103.3, 101.9, 103.0),
]
OPEN, HIGH, LOW, CLOSE = (np.array(col) for col in zip(*CANDLES, strict=True))
WINDOW = 5


def _candles_from(u: list[float]) -> tuple[Arr, Arr, Arr, Arr]:
    """Flat candles (open = close = low) whose ln(high/low) is u[i]."""
    low = np.full(len(u), 100.0)
    high = low * np.exp(np.array(u))
    return low.copy(), high, low, low.copy()


# ------------------------------------------------------------ independent plain-Python references


def ref_close_to_close(close: list[float], w: int, ppy: float) -> float:
    rets = [math.log(close[i] / close[i - 1]) for i in range(len(close) - w, len(close))]
    return statistics.stdev(rets) * math.sqrt(ppy)


def ref_ewma(close: list[float], w: int, ppy: float, lam: float) -> float:
    rets = [math.log(close[i] / close[i - 1]) for i in range(len(close) - w, len(close))]
    # the newest return weighs lam^0, the oldest lam^(w-1); the weights normalised to sum to 1
    weights = [lam ** (w - 1 - t) for t in range(w)]
    var = sum(wt * r**2 for wt, r in zip(weights, rets, strict=True)) / sum(weights)
    return math.sqrt(var * ppy)


def ref_parkinson(high: list[float], low: list[float], w: int, ppy: float) -> float:
    total = 0.0
    for h, lo in zip(high[-w:], low[-w:], strict=True):
        total += math.log(h / lo) ** 2
    return math.sqrt(total / (4 * w * math.log(2)) * ppy)


def ref_garman_klass(cs: list[tuple[float, float, float, float]], w: int, ppy: float) -> float:
    terms = [
        0.5 * math.log(h / lo) ** 2 - (2 * math.log(2) - 1) * math.log(c / o) ** 2
        for o, h, lo, c in cs[-w:]
    ]
    return math.sqrt(statistics.fmean(terms) * ppy)


def ref_yang_zhang(cs: list[tuple[float, float, float, float]], w: int, ppy: float) -> float:
    overnight, open_close, rs = [], [], []
    for i in range(len(cs) - w, len(cs)):
        o, h, lo, c = cs[i]
        overnight.append(math.log(o / cs[i - 1][3]))
        open_close.append(math.log(c / o))
        rs.append(math.log(h / c) * math.log(h / o) + math.log(lo / c) * math.log(lo / o))
    k = 0.34 / (1.34 + (w + 1) / (w - 1))
    var = (
        statistics.variance(overnight)
        + k * statistics.variance(open_close)
        + (1 - k) * statistics.fmean(rs)
    )
    return math.sqrt(var * ppy)


def ref_atr(cs: list[tuple[float, float, float, float]], w: int) -> float:
    trs = []
    for i in range(1, len(cs)):
        _, h, lo, _ = cs[i]
        prev_close = cs[i - 1][3]
        trs.append(max(h - lo, abs(h - prev_close), abs(lo - prev_close)))
    value = sum(trs[:w]) / w
    for tr in trs[w:]:
        value = (value * (w - 1) + tr) / w
    return value


# ------------------------------------------------------------ hand-worked values


def test_parkinson_three_candles_by_hand() -> None:
    # ln(H/L) = 0.01, 0.02, 0.03 → Σu² = 0.0001 + 0.0004 + 0.0009 = 0.0014, mean = 0.00046667;
    # / (4·ln 2 = 2.7725887) → 0.00016831 per hour; × 8760 h = 1.474434; √ → 1.21426 a year.
    _, h, lo, _ = _candles_from([0.01, 0.02, 0.03])
    assert parkinson(h, lo, 3, 8760.0) == pytest.approx(1.21426, rel=1e-5)


def test_close_to_close_by_hand() -> None:
    # Closes 100·e^(0, 0.01, 0.03, 0): returns 0.01, 0.02, -0.03, mean 0;
    # sample variance (0.0001 + 0.0004 + 0.0009) / 2 = 0.0007; √ = 0.0264575 (ppy 1).
    close = 100.0 * np.exp(np.array([0.0, 0.01, 0.03, 0.0]))
    assert close_to_close(close, 3, 1.0) == pytest.approx(0.0264575, rel=1e-6)


def test_ewma_two_returns_by_hand() -> None:
    # Returns 0.01 then 0.02, lam 0.94: weights 0.94 and 1 over their sum 1.94, so
    # (0.94·0.0001 + 0.0004) / 1.94 = 0.000494 / 1.94 = 0.000254639; √ = 0.0159574.
    close = 100.0 * np.exp(np.array([0.0, 0.01, 0.03]))
    assert ewma(close, 2, 1.0, lam=0.94) == pytest.approx(0.0159574, rel=1e-5)


def _one_old_shock(first: float) -> Arr:
    """169 hourly closes: the oldest of their 168 returns is ``first``, the other 167 are +-1 %."""
    r = np.array([first] + [0.01 * (-1) ** k for k in range(167)])
    closes: Arr = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    return closes


@pytest.mark.parametrize("lam", [0.94, 0.99, 0.999, 0.999999])
def test_ewma_is_not_set_by_the_windows_oldest_return(lam: float) -> None:
    """Raising lam lengthens the memory towards the equal-weighted estimate; it does not hand the
    estimate to one return. The recursion seeded with the window's first squared return gave
    that one return the weight lam^(window-1), 0.85 at lam 0.999 and window 168: with the other
    167 returns at 1 % an hour (0.94 a year), an oldest return of 0 read 0.37 and one of 8 %
    read 6.9, and the leverage sized on it swung as each hour's oldest return changed."""
    ppy = 24 * 365
    want = 0.01 * math.sqrt(ppy)  # every recent hour moved 1 %
    calm, shock = _one_old_shock(0.0), _one_old_shock(0.08)
    for close in (calm, shock):
        got = ewma(close, 168, ppy, lam)
        assert 0.8 * want < got < 1.25 * want, got
        # every window at once (the simulation's precompute) weighs the same way
        rolled = rolling("ewma", close, close, close, close, 168, ppy, lam)
        assert rolled[-1] == pytest.approx(got, rel=1e-12)


def test_ewma_tends_to_the_equal_weighted_estimate_as_lam_approaches_1() -> None:
    close = _one_old_shock(0.08)
    r = np.diff(np.log(close))
    equal = math.sqrt(float(r @ r) / 168 * 8760)  # zero mean, as the EWMA's
    assert ewma(close, 168, 8760, 0.999999) == pytest.approx(equal, rel=1e-4)


def test_garman_klass_two_candles_by_hand() -> None:
    # ln(H/L) = 0.02 and ln(C/O) = ±0.01 on both: 0.5·0.0004 - (2 ln 2 - 1)·0.0001
    # = 0.0002 - 0.386294·0.0001 = 0.00016137; √ = 0.0127031.
    low = np.array([100.0, 100.0])
    high = low * math.exp(0.02)
    open_ = np.array([100.0 * math.exp(0.005), 100.0 * math.exp(0.015)])
    close = np.array([100.0 * math.exp(0.015), 100.0 * math.exp(0.005)])
    assert garman_klass(open_, high, low, close, 2, 1.0) == pytest.approx(0.0127031, rel=1e-5)


def test_atr_by_hand() -> None:
    # True ranges (previous close in brackets): c1 [10] max(2, 2, 0) = 2; c2 [11] max(1.5, 2, 0.5)
    # = 2; c3 [12] max(3.5, 0.5, 3) = 3.5; c4 gap up [9.5] max(1, 4.5, 3.5) = 4.5.
    # Window 2: seed mean(2, 2) = 2; then (2·1 + 3.5)/2 = 2.75; then (2.75 + 4.5)/2 = 3.625.
    high = np.array([11.0, 12.0, 13.0, 12.5, 14.0])
    low = np.array([9.0, 10.0, 11.5, 9.0, 13.0])
    close = np.array([10.0, 11.0, 12.0, 9.5, 13.5])
    assert atr(high[:3], low[:3], close[:3], 2) == 2.0
    assert atr(high[:4], low[:4], close[:4], 2) == 2.75
    assert atr(high, low, close, 2) == 3.625
    np.testing.assert_array_equal(
        rolling_atr(high, low, close, 2), [np.nan, np.nan, 2, 2.75, 3.625]
    )


# ------------------------------------------------------------ against the references


@pytest.mark.parametrize("w", [2, 5, 11])
def test_estimators_match_plain_python(w: int) -> None:
    ppy = 8760.0
    close = CLOSE.tolist()
    assert close_to_close(CLOSE, w, ppy) == pytest.approx(
        ref_close_to_close(close, w, ppy), rel=1e-12
    )
    assert ewma(CLOSE, w, ppy, 0.9) == pytest.approx(ref_ewma(close, w, ppy, 0.9), rel=1e-12)
    assert parkinson(HIGH, LOW, w, ppy) == pytest.approx(
        ref_parkinson(HIGH.tolist(), LOW.tolist(), w, ppy), rel=1e-12
    )
    assert garman_klass(OPEN, HIGH, LOW, CLOSE, w, ppy) == pytest.approx(
        ref_garman_klass(CANDLES, w, ppy), rel=1e-12
    )
    assert yang_zhang(OPEN, HIGH, LOW, CLOSE, w, ppy) == pytest.approx(
        ref_yang_zhang(CANDLES, w, ppy), rel=1e-12
    )
    assert atr(HIGH, LOW, CLOSE, w) == pytest.approx(ref_atr(CANDLES, w), rel=1e-12)


def test_point_estimates_use_only_the_last_window() -> None:
    # Valid but wildly different older candles must not change the estimate.
    wild_o, wild_h, wild_l, wild_c = (
        np.concatenate(([5.0, 50.0], x)) for x in (OPEN, HIGH, LOW, CLOSE)
    )
    wild_h[:2], wild_l[:2] = 60.0, 1.0
    for name in ESTIMATORS:
        a = estimate(name, OPEN, HIGH, LOW, CLOSE, WINDOW, 8760.0)
        b = estimate(name, wild_o, wild_h, wild_l, wild_c, WINDOW, 8760.0)
        assert a == b, name


def test_estimate_dispatches_by_name() -> None:
    ppy = 8760.0
    assert estimate("close_to_close", OPEN, HIGH, LOW, CLOSE, WINDOW, ppy) == close_to_close(
        CLOSE, WINDOW, ppy
    )
    assert estimate("ewma", OPEN, HIGH, LOW, CLOSE, WINDOW, ppy, lam=0.8) == ewma(
        CLOSE, WINDOW, ppy, 0.8
    )
    assert estimate("parkinson", OPEN, HIGH, LOW, CLOSE, WINDOW, ppy) == parkinson(
        HIGH, LOW, WINDOW, ppy
    )
    assert estimate("garman_klass", OPEN, HIGH, LOW, CLOSE, WINDOW, ppy) == garman_klass(
        OPEN, HIGH, LOW, CLOSE, WINDOW, ppy
    )
    assert estimate("yang_zhang", OPEN, HIGH, LOW, CLOSE, WINDOW, ppy) == yang_zhang(
        OPEN, HIGH, LOW, CLOSE, WINDOW, ppy
    )
    assert ESTIMATORS == ("close_to_close", "ewma", "parkinson", "garman_klass", "yang_zhang")


def test_annualisation_of_hourly_candles() -> None:
    ppy = periods_per_year(parse_timeframe("1h"))
    assert ppy == 8760.0
    for name in ESTIMATORS:
        per_candle = estimate(name, OPEN, HIGH, LOW, CLOSE, WINDOW, 1.0)
        assert estimate(name, OPEN, HIGH, LOW, CLOSE, WINDOW, ppy) == pytest.approx(
            per_candle * math.sqrt(8760.0), rel=1e-14
        )


# ------------------------------------------------------------ rolling == point


def _random_candles(n: int, seed: int) -> tuple[Arr, Arr, Arr, Arr]:
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([30_000.0], close[:-1])) * np.exp(rng.normal(0.0, 0.001, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, n)))
    return open_, high, low, close


@pytest.mark.parametrize("name", ESTIMATORS)
def test_rolling_equals_point(name: str) -> None:
    o, h, lo, c = _random_candles(400, seed=7)
    w, ppy = 30, 8760.0
    out = rolling(name, o, h, lo, c, w, ppy, lam=0.97)
    needed = w + 1 if name in ("close_to_close", "ewma", "yang_zhang") else w
    assert out.shape == c.shape
    assert np.isnan(out[: needed - 1]).all()
    expected = [
        estimate(name, o[: i + 1], h[: i + 1], lo[: i + 1], c[: i + 1], w, ppy, lam=0.97)
        for i in range(needed - 1, len(c))
    ]
    np.testing.assert_allclose(out[needed - 1 :], expected, rtol=1e-10, atol=0)


def test_rolling_atr_equals_point() -> None:
    _, h, lo, c = _random_candles(400, seed=11)
    out = rolling_atr(h, lo, c, 14)
    assert np.isnan(out[:14]).all()
    expected = [atr(h[: i + 1], lo[: i + 1], c[: i + 1], 14) for i in range(14, len(c))]
    np.testing.assert_allclose(out[14:], expected, rtol=1e-12, atol=0)


def test_rolling_short_history_is_all_nan() -> None:
    for name in ESTIMATORS:
        assert np.isnan(rolling(name, OPEN[:4], HIGH[:4], LOW[:4], CLOSE[:4], 5, 1.0)).all()
    assert np.isnan(rolling_atr(HIGH[:5], LOW[:5], CLOSE[:5], 5)).all()


# ------------------------------------------------------------ validation


def test_too_few_candles_says_needed_and_given() -> None:
    with pytest.raises(ValueError, match="window=12 needs at least 13 closed candles, got 12"):
        close_to_close(CLOSE, 12, 1.0)
    with pytest.raises(ValueError, match="yang_zhang: window=12 needs at least 13"):
        yang_zhang(OPEN, HIGH, LOW, CLOSE, 12, 1.0)
    with pytest.raises(ValueError, match="needs at least 13 closed candles, got 12"):
        atr(HIGH, LOW, CLOSE, 12)
    parkinson(HIGH, LOW, 12, 1.0)  # needs only `window` candles
    with pytest.raises(ValueError, match="needs at least 13 closed candles, got 12"):
        parkinson(HIGH, LOW, 13, 1.0)


@pytest.mark.parametrize("bad", [math.nan, 0.0, -1.0, math.inf])
def test_bad_price_names_the_index(bad: float) -> None:
    close = CLOSE.copy()
    close[9] = bad
    with pytest.raises(ValueError, match=r"close\[9\]=.* is not a finite price > 0"):
        close_to_close(close, 5, 1.0)
    with pytest.raises(ValueError, match=r"close\[9\]"):
        rolling("ewma", OPEN, HIGH, LOW, close, 5, 1.0)
    # Outside the used slice it does not matter.
    close[3] = bad
    close[9] = CLOSE[9]
    close_to_close(close, 5, 1.0)


def test_bad_candle_shape_names_the_candle() -> None:
    high = HIGH.copy()
    high[10] = LOW[10] - 1.0  # high below low
    with pytest.raises(ValueError, match=r"candle 10 has .*need low <= open, close <= high"):
        parkinson(high, LOW, 5, 1.0)
    close = CLOSE.copy()
    close[11] = HIGH[11] + 1.0  # close above high
    with pytest.raises(ValueError, match="garman_klass: candle 11"):
        garman_klass(OPEN, HIGH, LOW, close, 5, 1.0)
    with pytest.raises(ValueError, match="rolling_atr: candle 11"):
        rolling_atr(HIGH, LOW, close, 5)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="window must be an integer >= 2, got 1"):
        close_to_close(CLOSE, 1, 1.0)
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        atr(HIGH, LOW, CLOSE, 1)
    with pytest.raises(ValueError, match="periods_per_year must be > 0"):
        parkinson(HIGH, LOW, 5, 0.0)
    with pytest.raises(ValueError, match=r"lam must be in \(0, 1\), got 1.0"):
        ewma(CLOSE, 5, 1.0, lam=1.0)
    with pytest.raises(ValueError, match="one length"):
        yang_zhang(OPEN[:-1], HIGH, LOW, CLOSE, 5, 1.0)


def test_unknown_estimator_lists_valid_names() -> None:
    for call in (estimate, rolling):
        with pytest.raises(ValueError, match="'vibes'; valid: close_to_close, ewma, parkinson"):
            call("vibes", OPEN, HIGH, LOW, CLOSE, 5, 1.0)


# ------------------------------------------------------------ properties

_candle = st.tuples(
    st.floats(-0.1, 0.1),  # log return open → close
    st.floats(-0.02, 0.02),  # log gap previous close → open
    st.floats(0.0, 0.05),  # upper wick (log)
    st.floats(0.0, 0.05),  # lower wick (log)
)


def _build(rows: list[tuple[float, float, float, float]]) -> tuple[Arr, Arr, Arr, Arr]:
    log_o, log_c, log_h, log_l = [], [], [], []
    prev = math.log(50.0)
    for body, gap, up, down in rows:
        lo_ = prev + gap
        lc_ = lo_ + body
        log_o.append(lo_)
        log_c.append(lc_)
        log_h.append(max(lo_, lc_) + up)
        log_l.append(min(lo_, lc_) - down)
        prev = lc_
    o, c = np.exp(log_o), np.exp(log_c)
    # exp rounding must not push open/close outside [low, high].
    h = np.maximum(np.exp(log_h), np.maximum(o, c))
    lo = np.minimum(np.exp(log_l), np.minimum(o, c))
    return o, h, lo, c


@settings(max_examples=200)
@given(
    rows=st.lists(_candle, min_size=6, max_size=40),
    scale=st.floats(1e-4, 1e4),
    window=st.integers(2, 5),
)
def test_scale_invariance_and_non_negative(
    rows: list[tuple[float, float, float, float]], scale: float, window: int
) -> None:
    o, h, lo, c = _build(rows)
    so, sh, slo, sc = o * scale, h * scale, lo * scale, c * scale
    for name in ESTIMATORS:
        base = estimate(name, o, h, lo, c, window, 1.0)
        assert base >= 0.0
        assert math.isfinite(base)
        scaled = estimate(name, so, sh, slo, sc, window, 1.0)
        # Tiny variances lose digits to cancellation; 1e-8 of annualised vol is far below noise.
        assert scaled == pytest.approx(base, rel=1e-6, abs=1e-8), name
        roll = rolling(name, so, sh, slo, sc, window, 1.0)
        assert (roll[~np.isnan(roll)] >= 0.0).all()
    # ATR is in price units: it scales with the prices.
    base_atr = atr(h, lo, c, window)
    assert base_atr >= 0.0
    assert atr(sh, slo, sc, window) == pytest.approx(base_atr * scale, rel=1e-9, abs=1e-12)


def test_checked_fast_path_gives_the_same_numbers() -> None:
    # The engine skips the per-call validation for candles validated at load; same results.
    o, h, lo, c = OPEN, HIGH, LOW, CLOSE
    for name in ESTIMATORS:
        assert estimate(name, o, h, lo, c, 5, 8760.0, checked=True) == estimate(
            name, o, h, lo, c, 5, 8760.0
        )
    assert atr(h, lo, c, 5, checked=True) == atr(h, lo, c, 5)
