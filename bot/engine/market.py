"""The market data port and the statistics the engine derives from it each tick."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bot.config.policy import Policy
from bot.domain.market import FundingInfo, MarketSnapshot
from bot.stats.timeframes import parse_timeframe, periods_per_year
from bot.stats.volatility import atr, estimate

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CandleWindow:
    """The last closed candles of one contract (oldest first), float64 arrays."""

    ts: npt.NDArray[np.int64]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    tf_ms: int

    def __len__(self) -> int:
        return len(self.ts)


class MarketDataPort(Protocol):
    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        """At most ``count`` candles of ``tf_ms`` that are closed at ``now_ms`` (never the forming
        one), ending with the latest."""
        ...

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        """The mean of the last ``lookback`` settled rates, the observed interval and the next
        settlement time."""
        ...

    def last_price(self, symbol: str, now_ms: int) -> tuple[Decimal, int] | None:
        """The last traded price known at ``now_ms`` and the time it was current (close of the
        latest closed candle), or ``None`` when there is no data at all."""
        ...


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
