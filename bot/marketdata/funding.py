"""The funding rate a decision reads: the mean of the last ``lookback`` settled rates.

One function for every mode: the simulation reads it over the downloaded funding history
(:meth:`bot.sim.history.HistoricalMarket.funding`), paper and live over the venue's settled
history (:meth:`bot.exchange.ccxt_market.CcxtMarketData.funding`), so the same settlements give
the same rate, interval and leverage whichever mode decides.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from bot.domain.market import FundingInfo
from bot.marketdata.candles import FundingSeries

ZERO = Decimal(0)


def settled_mean(f: FundingSeries, i: int, lookback: int) -> FundingInfo:
    """Funding as known when settlements ``f[:i]`` are settled and ``f[i]`` (if any) is next.

    The rate is the mean of the last ``lookback`` settled rates (all of them when fewer), to 10
    decimals; the interval is the hours the latest settled rate covers; the next settlement is
    ``f.ts[i]``. No settlement yet: rate 0 over 8 h. A single settlement with no other time
    around it: 8 h.
    """
    nxt = int(f.ts[i]) if i < len(f) else None
    if i == 0:
        return FundingInfo(ZERO, Decimal(8), nxt)
    lo = max(0, i - lookback)
    if len(f) < 2:
        return FundingInfo(Decimal(f"{float(np.mean(f.rate[lo:i])):.10f}"), Decimal(8), nxt)
    # A hole in the settlements is not an interval (FundingSeries.settlement_hours_at).
    spans = [f.settlement_hours_at(k) for k in range(lo, i)]
    latest = spans[-1]
    if all(h == latest for h in spans):
        mean = float(np.mean(f.rate[lo:i]))
    else:
        # The interval changed inside the lookback (Binance and Bybit move a contract from
        # 8 h to 4 h or 1 h in a squeeze, and back): each rate is for its own interval.
        # Averaged as they are and read per the latest interval, three 8-hourly rates
        # after a switch to 1 h read as an eightfold yearly cost, and 1-hourly rates after
        # a switch back to 8 h as an eighth of it. Their mean per hour, over the latest
        # interval, is the rate the venue charges at that pace.
        per_hour = float(np.mean(f.rate[lo:i] / np.asarray(spans)))
        mean = per_hour * latest
    return FundingInfo(Decimal(f"{mean:.10f}"), Decimal(repr(latest)), nxt)
