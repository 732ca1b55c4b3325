"""Stop-loss and take-profit prices."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from bot.domain.market import MarketSnapshot

DAYS_PER_YEAR = Decimal(365)
SQRT_DAYS = DAYS_PER_YEAR.sqrt()
HUNDRED = Decimal(100)


def daily_vol_unit(market: MarketSnapshot, price: Decimal) -> Decimal:
    """One volatility unit in price: the one-day standard deviation of the price."""
    return price * market.volatility / SQRT_DAYS


def distance(
    kind: Literal["atr", "vol", "percent"], amount: Decimal, market: MarketSnapshot, price: Decimal
) -> Decimal:
    """A distance in price units: ``amount`` ATRs, daily-volatility units, or percent of price."""
    if kind == "atr":
        return amount * market.atr
    if kind == "vol":
        return amount * daily_vol_unit(market, price)
    return price * amount / HUNDRED


def describe(kind: str, amount: Decimal) -> str:
    unit = {"atr": "ATR", "vol": "vol", "percent": "%"}[kind]
    return f"{amount}{unit}" if kind == "percent" else f"{amount} {unit}"
