"""The statistics the engine derives each tick from the market-data port (bot.ports.market)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from bot.config.policy import Policy
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.ports.market import CandleWindow, FloatArray
from bot.stats.timeframes import parse_timeframe, periods_per_year
from bot.stats.volatility import atr, estimate


def candles_needed(policy: Policy) -> int:
    """Closed candles a tick reads: the estimator window (+1 for returns), ATR, covariance."""
    need = max(policy.volatility.window + 1, policy.atr_window + 1)
    if policy.allocation is not None:
        need = max(need, policy.allocation.covariance_window + 1)
    if policy.hedge is not None:
        need = max(need, policy.hedge.beta_window + 1)
    return need


def to_decimal(x: float, places: int = 6) -> Decimal:
    """A statistic as an exact decimal with ``places`` digits (floats stay in statistics)."""
    return Decimal(f"{x:.{places}f}")


def build_snapshot(
    symbol: str,
    window: CandleWindow,
    funding: FundingInfo,
    last: Decimal,
    mark: Decimal,
    policy: Policy,
    asof_ms: int | None = None,
) -> MarketSnapshot | None:
    """Volatility and ATR by the policy's estimator; ``None`` if there is not enough history.

    ``asof_ms`` is when the data was last fresh (default: the close of the last candle)."""
    vol_p = policy.volatility
    n = vol_p.window
    if len(window) < max(n + 1, policy.atr_window + 1):
        return None
    ppy = periods_per_year(window.tf_ms)
    k = n + 1
    vol = estimate(
        vol_p.estimator,
        window.open[-k:],
        window.high[-k:],
        window.low[-k:],
        window.close[-k:],
        n,
        ppy,
        lam=float(vol_p.ewma_lambda),
        checked=True,  # windows come validated from the data files or the exchange adapter
    )
    # Wilder's ATR uses all the history it is given (its seed fades): pass the whole window.
    a = atr(window.high, window.low, window.close, policy.atr_window, checked=True)
    return MarketSnapshot(
        symbol=symbol,
        asof_ms=asof_ms if asof_ms is not None else int(window.ts[-1]) + window.tf_ms,
        last_price=last,
        mark_price=mark,
        volatility=to_decimal(vol),
        atr=to_decimal(a, 8),
        funding=funding,
        bar_hours=Decimal(window.tf_ms) / Decimal(3_600_000),
    )


def annual_covariance(windows: list[CandleWindow], count: int) -> FloatArray | None:
    """Annualised covariance of log returns over the last ``count`` common candles, or None."""
    if not windows:
        return None
    common = windows[0].ts
    for w in windows[1:]:
        common = np.intersect1d(common, w.ts, assume_unique=True)
    if len(common) < count + 1:
        return None
    common = common[-(count + 1) :]
    rets = []
    for w in windows:
        idx = np.searchsorted(w.ts, common)
        rets.append(np.diff(np.log(w.close[idx])))
    ppy = periods_per_year(windows[0].tf_ms)
    cov = np.atleast_2d(np.cov(np.vstack(rets))) * ppy
    return np.asarray(cov, dtype=np.float64)


def policy_tf_ms(policy: Policy) -> int:
    return parse_timeframe(policy.timeframe)
