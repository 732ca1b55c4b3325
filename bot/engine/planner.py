"""Order planning: from the position and resting orders of one contract to the orders that bring
it to the decision. Pure functions; the engine runs the plans in its fixed order of steps.

* Protective orders: exactly one stop-loss and at most one take-profit per position, reduce-only,
  triggered on the mark price, sized to the position. A protective order that must change is
  replaced by placing the new one **before** cancelling the old, so there is never a gap. A change
  of trigger price below ``protective_tolerance`` (fraction) does not churn orders. Protective
  orders of a flat contract (orphans) and duplicates are cancelled.
* Size: reduce-only market orders to de-lever or close, market orders to increase (only where
  allowed). A change below ``rebalance_tolerance`` (fraction of the larger of the current and
  target size) is not traded, except closing to flat, cutting a position above the venue's
  largest market order, or a step of an increase the volume participation cap cut (the rest
  follows over the next ticks: a step below the tolerance would otherwise never be taken). An
  amount above the largest market order is split into near-equal orders within it (a position
  the bot did not build can exceed it; the venue refuses a larger order).
  Reductions round up to the step (de-lever at least as asked, capped at the position);
  increases round down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from bot.domain.decision import Decision
from bot.domain.enums import OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.policy.leverage import leverage_setting

ZERO = Decimal(0)
IdFactory = Callable[[OrderPurpose], str]
# Members bound once: an enum member looked up on its class costs a slow attribute access (3.11).
_STOP_LOSS, _TAKE_PROFIT = OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT
_STOP_MARKET, _TAKE_PROFIT_MARKET = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET
_BUY, _SELL = OrderSide.BUY, OrderSide.SELL


@dataclass(slots=True)
class ProtectionPlan:
    place: list[OrderRequest] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)  # client ids, cancelled after ``place``
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SizePlan:
    leverage: int | None = None  # new leverage setting, None = keep
    reduce: list[OrderRequest] = field(default_factory=list)
    increase: list[OrderRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def exchange_setting(target_leverage: Decimal, instrument: Instrument, notional: Decimal) -> int:
    """The leverage setting for a target (:func:`leverage_setting`), within [1, bracket max]."""
    setting = leverage_setting(target_leverage)
    return max(1, min(setting, int(instrument.max_leverage_for(notional))))


def plan_size(
    decision: Decision,
    current_qty: Decimal,
    current_setting: Decimal,
    instrument: Instrument,
    price: Decimal,
    tolerance: Decimal,
    new_id: IdFactory,
) -> SizePlan:
    plan = SizePlan()
    target = decision.target_qty
    sym = decision.symbol
    if current_qty != 0 and (target == 0 or (target > 0) != (current_qty > 0)):
        side = OrderSide.SELL if current_qty > 0 else OrderSide.BUY
        plan.reduce.extend(
            market_orders(new_id, sym, side, OrderPurpose.CLOSE, abs(current_qty), instrument)
        )
        current_qty = ZERO
    if target == 0:
        return plan
    delta = target - current_qty
    larger = max(abs(target), abs(current_qty))
    largest = instrument.largest_order
    if largest is not None and abs(current_qty) > largest >= abs(target):
        tolerance = ZERO  # above what one order can close or one stop protect: always cut
    elif decision.participation_capped and abs(target) > abs(current_qty):
        tolerance = ZERO  # one step of a larger increase, worked over the ticks
    if delta == 0 or (current_qty != 0 and abs(delta) < tolerance * larger):
        if delta != 0:
            plan.notes.append(f"size change {abs(delta)} below tolerance {tolerance}")
        return plan
    setting = exchange_setting(decision.target_leverage, instrument, abs(target) * price)
    if Decimal(setting) != current_setting:
        plan.leverage = setting
    increasing = abs(target) > abs(current_qty)
    if not increasing:
        amount = min(instrument.ceil_qty(abs(delta)), abs(current_qty))
        side = OrderSide.SELL if current_qty > 0 else OrderSide.BUY
        plan.reduce.extend(
            market_orders(new_id, sym, side, OrderPurpose.REDUCE, amount, instrument)
        )
        return plan
    if not decision.allow_increase:
        plan.notes.append("increase not allowed by the policy")
        return plan
    amount = instrument.floor_qty(abs(delta))
    if amount < instrument.min_qty or amount * price < instrument.min_notional:
        plan.notes.append(f"increase {amount} below the exchange minimum")
        return plan
    side = OrderSide.BUY if delta > 0 else OrderSide.SELL
    plan.increase.extend(market_orders(new_id, sym, side, OrderPurpose.ENTRY, amount, instrument))
    return plan


def plan_protection(
    symbol: str,
    position_qty: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    resting: Sequence[Order],
    tolerance: Decimal,
    new_id: IdFactory,
) -> ProtectionPlan:
    """Orders that leave exactly the wanted protective orders resting for ``position_qty``."""
    plan = ProtectionPlan()
    if position_qty == 0:
        for o in resting:
            if o.purpose is not None and o.purpose.is_protective:
                plan.cancel.append(o.client_id)
                plan.notes.append(f"cancel orphan {o.purpose} {o.client_id}: no position")
        return plan
    stops, takes = _protective_by_purpose(resting)
    size = abs(position_qty)
    side = _SELL if position_qty > 0 else _BUY
    wants = (
        (_STOP_LOSS, _STOP_MARKET, stop_loss, stops),
        (_TAKE_PROFIT, _TAKE_PROFIT_MARKET, take_profit, takes),
    )
    for purpose, otype, price, existing in wants:
        keep = None
        for o in existing:
            if keep is None and price is not None and _matches(o, side, size, price, tolerance):
                keep = o
            else:
                plan.cancel.append(o.client_id)
        if len(existing) > 1:
            plan.notes.append(
                f"{len(existing)} resting {purpose.name.lower()} orders: reduced to one"
            )
        if price is None:
            continue
        if keep is None:
            plan.place.append(
                OrderRequest(
                    client_id=new_id(purpose),
                    symbol=symbol,
                    side=side,
                    type=otype,
                    purpose=purpose,
                    amount=size,
                    reduce_only=True,
                    trigger_price=price,
                )
            )
    return plan


def _protective_by_purpose(resting: Sequence[Order]) -> tuple[list[Order], list[Order]]:
    """The resting stop-losses and take-profits, each in the order listed (one pass)."""
    stops: list[Order] = []
    takes: list[Order] = []
    for o in resting:
        if o.purpose is _STOP_LOSS:
            stops.append(o)
        elif o.purpose is _TAKE_PROFIT:
            takes.append(o)
    return stops, takes


def _matches(order: Order, side: OrderSide, size: Decimal, price: Decimal, tol: Decimal) -> bool:
    if order.side is not side or order.trigger_price is None:
        return False
    if not order.close_position and order.amount != size:
        return False
    return abs(order.trigger_price - price) <= tol * price


def market_orders(
    new_id: IdFactory,
    symbol: str,
    side: OrderSide,
    purpose: OrderPurpose,
    amount: Decimal,
    instrument: Instrument,
) -> list[OrderRequest]:
    """Market orders for ``amount`` in all, each within the venue's largest market order
    (:meth:`Instrument.order_sizes`): one order unless the amount is above it. Every order but
    an entry is reduce-only."""
    reduce_only = purpose is not OrderPurpose.ENTRY
    return [
        market_order(new_id(purpose), symbol, side, purpose, size, reduce_only=reduce_only)
        for size in instrument.order_sizes(amount)
    ]


def market_order(
    cid: str,
    symbol: str,
    side: OrderSide,
    purpose: OrderPurpose,
    amount: Decimal,
    *,
    reduce_only: bool,
) -> OrderRequest:
    return OrderRequest(
        client_id=cid,
        symbol=symbol,
        side=side,
        type=OrderType.MARKET,
        purpose=purpose,
        amount=amount,
        reduce_only=reduce_only,
    )
