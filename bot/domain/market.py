"""What the policy sees of the market for one contract at one tick."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

HOURS_PER_YEAR = Decimal(24 * 365)  # built once: funding and volatility scale by it each tick


@dataclass(frozen=True, slots=True)
class FundingInfo:
    """Funding as known at a tick. ``rate`` is a fraction per interval; > 0 means longs pay."""

    rate: Decimal
    interval_hours: Decimal  # hours between settlements (observed, not assumed 8)
    next_settlement_ms: int | None  # None when unknown

    @property
    def annualized(self) -> Decimal:
        """Rate per year (fraction): rate x settlements per 365-day year."""
        return self.rate * HOURS_PER_YEAR / self.interval_hours


@dataclass(frozen=True, slots=True)
class VenueRestriction:
    """What the venue allows on one contract, where it allows less than trading.

    ``withdrawn``: the venue no longer trades it (absent from its markets, or listed with a
    status other than trading): no decision, no order that adds exposure, and no order at all
    once the venue refused one or when it no longer lists the market (``listed`` False: its
    per-contract reads cannot be made either). Not withdrawn: a settlement the venue announced
    is near, the contract trades on, reduce-only. ``reason`` says which, for events and
    denials.
    """

    reason: str
    withdrawn: bool = True
    listed: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketSnapshot:
    """Closed-candle statistics for one contract at ``asof_ms`` (the close of the last used candle).

    Volatility figures are annualised fractions; ``atr`` is in quote currency per unit.
    ``avg_volume`` is the mean traded volume per decision candle (base units) over the
    volatility estimator's window; ``None`` when unknown (no volume in the data or from the
    venue, or none traded over the whole window): see :mod:`bot.policy.participation`.
    """

    symbol: str
    asof_ms: int
    last_price: Decimal
    mark_price: Decimal
    volatility: Decimal  # policy's estimator over the policy's window, annualised
    atr: Decimal
    funding: FundingInfo
    bar_hours: Decimal  # decision timeframe, hours per candle
    avg_volume: Decimal | None = None

    def volatility_over(self, hours: Decimal) -> Decimal:
        """Volatility of the log price over ``hours`` (fraction), from the annualised figure."""
        return self.volatility * (hours / HOURS_PER_YEAR).sqrt()
