"""How much of a position its resting stops protect: the one answer the engine's verification,
the alerts, ``bot status`` and the dashboard share.

A stop counts when it rests on the side that closes the position (a sell stop for a long, a buy
stop for a short): a stop on the other side would open or grow a position, never protect one.
A close-position stop (Binance ``closePosition=true``) covers the whole position whatever its
size, because the venue sizes it at trigger time; sized stops on the closing side add up (two
stops of 0.5 protect a position of 1). The caller chooses which orders are stops (the bot's own
stop-losses, stops placed by hand) and, where it knows the mark and the liquidation price,
which triggers are valid.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from bot.domain.enums import OrderPurpose, OrderSide, OrderType
from bot.domain.orders import Order, OrderRequest

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class StopLeg:
    """One resting stop as coverage sees it: its side, its size (``None`` with close-position)
    and whether the venue closes the whole position with it."""

    side: OrderSide
    amount: Decimal | None
    close_position: bool


@dataclass(frozen=True, slots=True)
class Coverage:
    """``size`` (absolute position) against what its counted stops close."""

    size: Decimal
    covered: Decimal  # what the stops close together, at most ``size``
    whole: bool  # a close-position stop rests: the whole position, whatever its size
    stops: int  # how many stops counted

    @property
    def uncovered(self) -> Decimal:
        """The part of the position no resting stop closes (0: fully protected)."""
        return ZERO if self.whole else self.size - self.covered

    @property
    def complete(self) -> bool:
        return self.uncovered <= 0

    def describe(self) -> str:
        """For events and alerts, e.g. ``"stops cover 0.12 of 0.123: 0.003 unprotected"``."""
        size = plain(self.size)
        if self.whole:
            return f"a close-position stop covers the whole {size}"
        if self.stops == 0:
            return f"no resting stop on the closing side: {size} unprotected"
        return f"stops cover {plain(self.covered)} of {size}: {plain(self.uncovered)} unprotected"


def plain(x: Decimal) -> str:
    """A quantity without trailing zeros or an exponent (``0.0030`` -> ``0.003``)."""
    return format(x.normalize(), "f") if x else "0"


def closing_side(position_qty: Decimal) -> OrderSide:
    """The side of an order that reduces a position of signed ``position_qty``."""
    return OrderSide.SELL if position_qty > 0 else OrderSide.BUY


def coverage(position_qty: Decimal, stops: Iterable[StopLeg]) -> Coverage:
    """How much of the position of signed ``position_qty`` the ``stops`` protect."""
    size = abs(position_qty)
    side = closing_side(position_qty)
    covered = ZERO
    whole = False
    counted = 0
    for leg in stops:
        if leg.side is not side:
            continue  # it would add to the position (or open the other side), not close it
        counted += 1
        if leg.close_position:
            whole = True
        elif leg.amount is not None and leg.amount > 0:
            covered += leg.amount
    if whole:
        covered = size
    return Coverage(size=size, covered=min(covered, size), whole=whole, stops=counted)


def is_stop(order: Order) -> bool:
    """A stop as protection counts it: the bot's stop-loss, or a stop-market order placed by
    hand (not the bot's client id: a position protected by hand is not naked)."""
    return order.purpose is OrderPurpose.STOP_LOSS or (
        order.purpose is None and order.type is OrderType.STOP_MARKET
    )


def resting_stops(orders: Iterable[Order]) -> list[StopLeg]:
    """The stops (:func:`is_stop`) among orders the exchange lists; the side is judged by
    :func:`coverage`."""
    return [StopLeg(o.side, o.amount, o.close_position) for o in orders if is_stop(o)]


class _Recorded(Protocol):
    @property
    def request(self) -> OrderRequest: ...


def recorded_stops(records: Iterable[_Recorded], symbol: str) -> list[StopLeg]:
    """The bot's stop-losses the state database believes rest for ``symbol`` (``bot status``
    and the dashboard read no exchange)."""
    return [
        StopLeg(r.request.side, r.request.amount, r.request.close_position)
        for r in records
        if r.request.symbol == symbol and r.request.purpose is OrderPurpose.STOP_LOSS
    ]
