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


def trailing_anchor(resting: Decimal | None, sign: int, mark: Decimal) -> Decimal | None:
    """The resting stop-loss trigger the trailing rule may start from, for a position of side
    ``sign`` (+1 long, -1 short) at ``mark``; ``None``: none may.

    A trigger the mark has already crossed (at or through it: a long's sell stop at or above
    the mark, a short's buy stop at or below it) is no anchor. The venue fires such a stop (or
    refuses it at placement: Binance -2021 "Order would immediately trigger"), so it is either
    a stop about to fire or an answer that reads wrong (an open-orders reply listing the
    trigger ten times over). Taken as the anchor, the risk layer moved it to one tick off the
    mark, and the loss budget, measuring almost no loss at that stop, let the position grow.
    The policy's own stop around the mark is used instead; the protection step replaces the
    resting one, which does not protect, as it replaces any stop that does not."""
    if resting is None or (resting - mark) * sign >= 0:  # crossed_by_mark, inlined: every tick
        return None
    return resting


def crossed_by_mark(trigger: Decimal, sign: int, mark: Decimal) -> bool:
    """Whether the mark is at or through the stop-loss trigger of a position of side ``sign``:
    a stop the venue fires now (a long's sell stop at or above the mark, a short's buy stop at
    or below it), or a reading that is wrong (see :func:`trailing_anchor`)."""
    return (trigger - mark) * sign >= 0
