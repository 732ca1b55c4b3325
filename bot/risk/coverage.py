"""How much of a position its resting stops protect: the one answer the engine's verification,
the alerts, ``bot status`` and the dashboard share.

A stop counts when it rests on the side that closes the position (a sell stop for a long, a buy
stop for a short): a stop on the other side would open or grow a position, never protect one.
A close-position stop (Binance ``closePosition=true``) covers the whole position whatever its
size, because the venue sizes it at trigger time; sized stops on the closing side add up (two
stops of 0.5 protect a position of 1). The caller chooses which orders are stops (the bot's own
stop-losses, stops placed by hand) and, where it knows the mark and the liquidation price,
which triggers are valid.

A stop placed by hand (no bot client id) counts only when it is what the bot itself would rest
(:func:`by_hand_shortfall`): a stop-market (a stop-limit may never fill through a fast market,
a trailing stop's trigger moves), reduce-only or close-position (else, once the position is
gone, it opens one), triggered on the mark price (a last-price trigger fires on a wick of the
traded price, or not before the mark reaches liquidation); a trigger price the venue's reply
does not name does not count. Beside one that does not count, the bot rests its own stop and
leaves the trader's order alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from bot.domain.enums import OrderPurpose, OrderSide, OrderType, TriggerBy
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
    """A stop as protection counts it: the bot's stop-loss still triggered on the mark
    (:func:`own_trigger_changed`), or an order placed by hand (not the bot's client id: a
    position protected by hand is not naked) that protects as the bot's would
    (:func:`by_hand_shortfall`). The side is judged by :func:`coverage`."""
    if order.purpose is OrderPurpose.STOP_LOSS:
        return not own_trigger_changed(order)
    return order.purpose is None and by_hand_shortfall(order) is None


def own_trigger_changed(order: Order) -> bool:
    """The bot's own stop-loss, which it sends triggered on the mark, reported triggered on
    another price: changed outside the bot (Bybit amends an order's ``triggerBy``). Triggered
    on the last price it fires on a wick the mark never makes, or not before the mark reaches
    the liquidation price; it is replaced. A reply that does not say (``None``) is taken as
    sent."""
    return (
        order.purpose is OrderPurpose.STOP_LOSS
        and order.trigger_by is not None
        and order.trigger_by is not TriggerBy.MARK
    )


def by_hand_shortfall(order: Order) -> str | None:
    """Why an order placed by hand is no stop-loss protection (``None``: it is one): it must be
    a stop-market, reduce-only or close-position, triggered on the mark price as the venue's
    reply says."""
    if order.type is not OrderType.STOP_MARKET:
        return f"a {order.type.value.replace('_', '-')} order, not a stop-market"
    if not (order.reduce_only or order.close_position):
        return "not reduce-only or close-position"
    if order.trigger_by is None:
        return "the venue's reply does not say which price triggers it (the mark is required)"
    if order.trigger_by is not TriggerBy.MARK:
        return f"triggered on the {order.trigger_by.value} price, not the mark"
    return None


def uncounted_by_hand(orders: Iterable[Order], side: OrderSide) -> list[tuple[Order, str]]:
    """The stop orders placed by hand on ``side`` (the closing side) that do not count as
    protection, each with why (:func:`by_hand_shortfall`), for alerts and events. Take-profit
    orders are no stop and are not named."""
    out = []
    for o in orders:
        if o.purpose is not None or o.side is not side or not o.type.is_conditional:
            continue
        if o.type in (OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT_LIMIT):
            continue
        why = by_hand_shortfall(o)
        if why is not None:
            out.append((o, why))
    return out


def close_position_slot_holder(orders: Iterable[Order], side: OrderSide) -> Order | None:
    """The close-position stop-market placed by hand that rests on ``side`` and does not count
    as protection, if any: the venue takes one close-position order per side and type (Binance
    -4130), so it blocks the bot's own, and the bot never cancels an order placed by hand."""
    for o in orders:
        if (
            o.purpose is None
            and o.close_position
            and o.side is side
            and o.type is OrderType.STOP_MARKET
            and not is_stop(o)
        ):
            return o
    return None


def holds_close_position_slot(orders: Iterable[Order], side: OrderSide) -> bool:
    """:func:`close_position_slot_holder` finds one."""
    return close_position_slot_holder(orders, side) is not None


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
