"""The statistics the engine derives each tick from the market-data port (bot.ports.market)."""

from __future__ import annotations

import functools
import math
from decimal import Decimal

import numpy as np

from bot.config.policy import Policy
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.ports.market import CandleWindow, FloatArray, StatisticsSpec
from bot.stats.timeframes import parse_timeframe, periods_per_year
from bot.stats.volatility import atr, estimate


def candles_needed(policy: Policy) -> int:
    """Closed candles a tick reads: the estimator window (+1 for returns), ATR, covariance."""
    return longest_window(policy)[1] + 1


def longest_window(policy: Policy) -> tuple[str, int]:
    """The policy key whose window of candles is the longest, and that window (the first key
    on a tie), so that an error about too little data can name the key to change."""
    windows = {"volatility.window": policy.volatility.window, "atr_window": policy.atr_window}
    if policy.allocation is not None:
        windows["allocation.covariance_window"] = policy.allocation.covariance_window
    if policy.hedge is not None:
        windows["hedge.beta_window"] = policy.hedge.beta_window
    return max(windows.items(), key=lambda kv: kv[1])


def snapshot_window(policy: Policy) -> tuple[str, int]:
    """The candles a window must hold for :func:`build_snapshot` to estimate on it, and the
    policy key that sets it (the volatility estimator's window + 1 for its returns, or ATR's):
    fewer, and the contract gets no decision (see bot.engine.undecided)."""
    vol, atr_n = policy.volatility.window + 1, policy.atr_window + 1
    return ("volatility.window", vol) if vol >= atr_n else ("atr_window", atr_n)


# Equal specs share one instance (specs are frozen, so this is only an identity): the engine's and
# the one a market-data implementation computed ahead with then compare by identity first.
_SPECS: dict[StatisticsSpec, StatisticsSpec] = {}


def statistics_spec(policy: Policy) -> StatisticsSpec:
    """What :func:`build_snapshot` estimates on each window of ``policy``'s candles."""
    spec = StatisticsSpec(
        estimator=policy.volatility.estimator,
        window=policy.volatility.window,
        lam=float(policy.volatility.ewma_lambda),
        atr_window=policy.atr_window,
        span=candles_needed(policy),
    )
    return _SPECS.setdefault(spec, spec)


def to_decimal(x: float, places: int = 6) -> Decimal:
    """A statistic as an exact decimal with ``places`` digits (floats stay in statistics)."""
    return Decimal(f"{x:.{places}f}")


def price_statistic(x: float, places: int = 8, digits: int = 8) -> Decimal:
    """A statistic in price units (ATR) as an exact decimal: ``places`` decimals, or ``digits``
    significant digits when that is finer. A contract priced 0.00001 has an hourly ATR near
    1e-7, which 8 decimals would keep to one or two digits (and a stop distance of a multiple of
    it off by tens of percent); contracts priced above 1 keep exactly 8 decimals."""
    if x != 0.0 and math.isfinite(x):
        places = max(places, digits - 1 - math.floor(math.log10(abs(x))))
    return Decimal(f"{x:.{places}f}")


def build_snapshot(
    symbol: str,
    window: CandleWindow,
    funding: FundingInfo,
    last: Decimal,
    mark: Decimal,
    policy: Policy,
    asof_ms: int | None = None,
    spec: StatisticsSpec | None = None,
) -> MarketSnapshot | None:
    """Volatility and ATR by the policy's estimator; ``None`` if there is not enough history.

    ``asof_ms`` is when the data was last fresh (default: the close of the last candle);
    ``spec`` is ``statistics_spec(policy)`` when the caller keeps it (computed otherwise)."""
    vol_p = policy.volatility
    n = vol_p.window
    if len(window.ts) < max(n + 1, policy.atr_window + 1):  # (snapshot_window, inlined: hot)
        return None
    pre = window.statistics
    if pre is not None and (pre.spec is spec or pre.spec == (spec or statistics_spec(policy))):
        # Computed ahead for every window of the history (simulation): the same estimates.
        vol, a, traded = pre.volatility, pre.atr, pre.volume
    else:
        vol, a = window_statistics(window, policy)
        traded = window_volume(window, n)
    return MarketSnapshot(
        symbol=symbol,
        asof_ms=asof_ms if asof_ms is not None else int(window.ts[-1]) + window.tf_ms,
        last_price=last,
        mark_price=mark,
        volatility=to_decimal(vol),
        atr=price_statistic(a),
        funding=funding,
        bar_hours=_bar_hours(window.tf_ms),
        avg_volume=volume_statistic(traded),
    )


@functools.cache
def _bar_hours(tf_ms: int) -> Decimal:
    return Decimal(tf_ms) / Decimal(3_600_000)


def window_volume(window: CandleWindow, n: int) -> float:
    """Mean traded volume per candle (base units) over the last ``n`` candles of ``window`` (the
    volatility estimator's window: the span the policy already calls "recent"); NaN when the
    source gives no volume."""
    v = window.volume
    if v is None or len(v) < n:
        return math.nan
    return float(np.sum(v[-n:])) / n


def volume_statistic(x: float) -> Decimal | None:
    """A mean volume as an exact decimal (8 decimals or 8 significant digits), or ``None`` when
    it is unknown: NaN (no volume data) or not above zero. A whole window without one traded
    unit is a feed or venue that reports none far more often than a listed perpetual without a
    trade: it must not read as "no market" nor as "no limit" (see bot.policy.participation)."""
    if not x > 0.0 or x == math.inf:  # (NaN fails the first test)
        return None
    # price_statistic's rule, inlined: it runs for every contract at every tick.
    places = 8 if x >= 1.0 else 7 - math.floor(math.log10(x))
    return Decimal(f"{x:.{places}f}")


def window_statistics(window: CandleWindow, policy: Policy) -> tuple[float, float]:
    """The policy's volatility estimate and ATR on ``window`` (long enough: see build_snapshot)."""
    vol_p = policy.volatility
    n = vol_p.window
    k = n + 1
    vol = estimate(
        vol_p.estimator,
        window.open[-k:],
        window.high[-k:],
        window.low[-k:],
        window.close[-k:],
        n,
        periods_per_year(window.tf_ms),
        lam=float(vol_p.ewma_lambda),
        checked=True,  # windows come validated from the data files or the exchange adapter
    )
    # Wilder's ATR uses all the history it is given (its seed fades): pass the whole window.
    a = atr(window.high, window.low, window.close, policy.atr_window, checked=True)
    return vol, a


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
