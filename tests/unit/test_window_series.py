"""Statistics computed ahead for every window of a history equal the engine's point estimates."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bot.config import load_policy
from bot.config.policy import Policy
from bot.domain.market import FundingInfo
from bot.engine.market import build_snapshot, statistics_spec, window_statistics
from bot.marketdata.candles import Candles
from bot.ports.market import CandleWindow
from bot.sim.history import ContractHistory, HistoricalMarket, _segment_starts
from bot.stats.volatility import ESTIMATORS, atr, estimate
from bot.stats.window_series import trailing_atr, trailing_estimates

F64 = npt.NDArray[np.float64]
HOUR = 3_600_000
POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _policy(estimator: str = "yang_zhang", window: int = 24) -> Policy:
    base = load_policy(POLICIES / "vol_target.toml")
    vol = base.volatility.model_copy(update={"estimator": estimator, "window": window})
    return base.model_copy(update={"volatility": vol})


def _ohlc(n: int, seed: int) -> tuple[F64, F64, F64, F64]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.004, n)))
    return open_, high, low, close


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("window", [2, 5, 24])
def test_every_window_equals_the_point_estimate(name: str, window: int) -> None:
    o, h, lo, c = _ohlc(300, seed=window)
    out = trailing_estimates(name, o, h, lo, c, window, 8760.0, 0.9)
    assert len(out) == len(c) + 1
    needed = window if name in ("parkinson", "garman_klass") else window + 1
    assert np.isnan(out[:needed]).all()
    assert not np.isnan(out[needed:]).any()
    for e in range(window + 1, len(c) + 1):
        k = window + 1
        point = estimate(
            name, o[e - k : e], h[e - k : e], lo[e - k : e], c[e - k : e], window, 8760.0, 0.9
        )
        assert out[e] == pytest.approx(point, rel=1e-13, abs=0.0), (name, e)


@pytest.mark.parametrize(("window", "span"), [(2, 3), (14, 15), (14, 169), (5, 400)])
def test_every_span_equals_wilders_atr_on_that_span(window: int, span: int) -> None:
    _, h, lo, c = _ohlc(600, seed=span)
    out = trailing_atr(h, lo, c, window, span)
    assert np.isnan(out[:span]).all()
    for e in range(span, len(c) + 1):
        point = atr(h[e - span : e], lo[e - span : e], c[e - span : e], window)
        assert out[e] == pytest.approx(point, rel=1e-13, abs=0.0), e


def test_bad_arguments_are_named() -> None:
    o, h, lo, c = _ohlc(50, seed=1)
    with pytest.raises(ValueError, match="unknown volatility estimator 'garch'"):
        trailing_estimates("garch", o, h, lo, c, 10, 8760.0)
    with pytest.raises(ValueError, match="span >= window \\+ 1"):
        trailing_atr(h, lo, c, 14, 14)


def _history(n: int, gap_at: int) -> ContractHistory:
    o, h, lo, c = _ohlc(n, seed=7)
    ts = np.arange(n, dtype=np.int64) * HOUR
    ts[gap_at:] += 5 * HOUR  # a gap of five missing candles
    candles = Candles(ts, o, h, lo, c, np.ones(n), HOUR, "X/USDT:USDT", "trade", "test")
    return ContractHistory("X/USDT:USDT", candles, _segment_starts(candles), candles, candles, None)


def test_market_hands_out_the_engines_own_numbers_and_estimates_cut_windows() -> None:
    """Through the market-data port: every window the engine reads gets exactly the snapshot it
    would compute itself; windows cut short by a gap carry nothing and are estimated."""
    policy = _policy()
    spec = statistics_spec(policy)
    history = _history(400, gap_at=250)
    market = HistoricalMarket({"X/USDT:USDT": history})
    market.precompute(spec)
    funding = FundingInfo(Decimal(0), Decimal(8), None)
    handed = cut = 0
    for now in range(0, int(history.decision.ts[-1]) + 2 * HOUR, HOUR):
        window = market.closed_candles("X/USDT:USDT", HOUR, spec.span, now)
        if len(window) < spec.span:
            assert window.statistics is None
            cut += 1
            continue
        assert window.statistics is not None
        handed += 1
        w = window
        plain = CandleWindow(w.ts, w.open, w.high, w.low, w.close, HOUR, volume=w.volume)
        vol, a = window_statistics(plain, policy)
        assert window.statistics.volatility == pytest.approx(vol, rel=1e-13)
        assert window.statistics.atr == pytest.approx(a, rel=1e-13)
        fast = build_snapshot("X/USDT:USDT", window, funding, Decimal(1), Decimal(1), policy)
        slow = build_snapshot("X/USDT:USDT", plain, funding, Decimal(1), Decimal(1), policy)
        assert fast == slow
    assert handed > 300
    assert cut > 0


def test_a_window_from_another_policy_is_estimated_not_looked_up() -> None:
    policy = _policy()
    other = _policy("parkinson")
    market = HistoricalMarket({"X/USDT:USDT": _history(200, gap_at=199)})
    market.precompute(statistics_spec(other))
    window = market.closed_candles("X/USDT:USDT", HOUR, statistics_spec(policy).span, 150 * HOUR)
    assert window.statistics is not None
    assert window.statistics.spec != statistics_spec(policy)
    funding = FundingInfo(Decimal(0), Decimal(8), None)
    snap = build_snapshot("X/USDT:USDT", window, funding, Decimal(1), Decimal(1), policy)
    vol, _ = window_statistics(window, policy)
    assert snap is not None
    assert snap.volatility == Decimal(f"{vol:.6f}")


def test_atr_of_a_contract_priced_in_millionths_keeps_its_digits() -> None:
    """Eight decimals would leave an ATR of 1.234567e-7 as 0.00000012 (a 3 % error that a stop
    distance of k x ATR inherits); the snapshot keeps eight significant digits instead."""
    o, h, lo, c = (x * 1e-7 for x in _ohlc(200, seed=3))  # prices near 1e-5
    window = CandleWindow(np.arange(200, dtype=np.int64) * HOUR, o, h, lo, c, HOUR)
    policy = _policy()
    _, a = window_statistics(window, policy)
    funding = FundingInfo(Decimal(0), Decimal(8), None)
    snap = build_snapshot("X/USDT:USDT", window, funding, Decimal(1), Decimal(1), policy)
    assert snap is not None
    assert a < 1e-6
    assert abs(float(snap.atr) / a - 1) < 1e-7
    big = CandleWindow(window.ts, o * 1e9, h * 1e9, lo * 1e9, c * 1e9, HOUR)
    snap_big = build_snapshot("X/USDT:USDT", big, funding, Decimal(1), Decimal(1), policy)
    assert snap_big is not None
    assert snap_big.atr == snap_big.atr.quantize(Decimal("1e-8"))  # prices above 1: 8 decimals
