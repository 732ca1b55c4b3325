"""Order planning: from the position and resting orders of one contract to the orders that bring
it to the decision. Pure functions; the engine runs the plans in its fixed order of steps.

* Protective orders: exactly one stop-loss and at most one take-profit per position, reduce-only,
  triggered on the mark price, sized to the position. A protective order that must change is
  replaced by placing the new one **before** cancelling the old, so there is never a gap. A change
  of trigger price below ``protective_tolerance`` (fraction) does not churn orders. Protective
  orders of a flat contract (orphans) and duplicates are cancelled. A position no order can
  carry (off the venue's quantity step, or below its minimum: opened by hand at a finer step,
  or before the venue made its step coarser) gets a close-position stop where the venue has
  one (Binance ``closePosition``), else a stop sized to the part on the step, and the plan
  names the remainder no order can protect (:func:`stop_sizing`).
  The venue holds one close-position order per side and type (Binance -4130), so moving one
  cancels the old before placing the new: a stop on the part on the step bridges the swap,
  and the old trigger is put back at once if the new one is refused. Below the venue's
  minimum there is no part to bridge with: a resting close-position stop that still protects
  (strictly between the mark and the liquidation price) is kept rather than moved; a tighter
  or looser stop is not worth a moment with none. Only one that no longer protects is replaced.
  Likewise on a venue without close-position stops (Bybit): a resting stop-loss that still
  protects is never cancelled for a replacement that would cover less of the position (the
  part on the step) or nothing (below the minimum, where no order can be placed); it is kept
  where it is, with a note (:func:`_protects_more`), until it no longer protects. While it
  covers the position whole, the size plan sends no increase that leaves the position off the
  step (``plan_size`` ``kept_whole``): the stop of the larger position, sized to its part on
  the step, would replace the kept one and leave the part below the step with none.
* Size: reduce-only market orders to de-lever or close, market orders to increase (only where
  allowed). A change below ``rebalance_tolerance`` (fraction of the larger of the current and
  target size) is not traded, except closing to flat, cutting a position above the venue's
  largest market order or above a hard cap the decision was sized within (``Decision.above_cap``:
  a price move carried it past the risk limits' leverage or notional per contract), or a
  step of an increase the volume participation cap cut (the rest
  follows over the next ticks: a step below the tolerance would otherwise never be taken). An
  amount above the largest market order is split into near-equal orders within it (a position
  the bot did not build can exceed it; the venue refuses a larger order).
  Reductions round up to the step and to at least the venue's minimum order, and close the
  whole position where less than the minimum would remain (de-lever at least as asked, into
  orders the venue accepts: it applies the minimum to reduce-only orders too; capped at the
  part of the position on the step); increases round down. A close of a position off the
  step closes the part on the step and names the remainder (a reduce-only order larger than
  the position is refused by the venue: Binance -2022 on the loopback; not assumed to pass).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from bot.domain.decision import Decision
from bot.domain.enums import OrderPurpose, OrderSide, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.policy.leverage import leverage_setting
from bot.risk.coverage import (
    by_hand_shortfall,
    close_position_slot_holder,
    own_trigger_changed,
    plain,
)

ZERO = Decimal(0)
IdFactory = Callable[[OrderPurpose], str]
# Whether a resting order is valid protection for the position now (trigger strictly between the
# mark and the liquidation price): the engine's judgement, handed to the pure planner.
StillProtects = Callable[[Order], bool]
# Members bound once: an enum member looked up on its class costs a slow attribute access (3.11).
_STOP_LOSS, _TAKE_PROFIT = OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT
_STOP_MARKET, _TAKE_PROFIT_MARKET = OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET
_BUY, _SELL = OrderSide.BUY, OrderSide.SELL


@dataclass(slots=True)
class ProtectionPlan:
    place: list[OrderRequest] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)  # client ids, cancelled after ``place``
    notes: list[str] = field(default_factory=list)
    # A note that describes a lasting condition (a stop kept where it is, an order placed by
    # hand holding the close-position slot) mapped to that condition's key: the protection
    # check runs every guard interval, and the engine records such a note once while its
    # condition lasts, not once a minute. Notes absent here are recorded each time.
    standing: dict[str, str] = field(default_factory=dict)
    # A close-position order cannot be placed before the old one is cancelled (one per side
    # and type: Binance -4130): ``place`` holds a stop sized to the part on the step that
    # bridges the swap, ``cancel`` the old order, then ``then_place`` the new one and, once it
    # rests, ``then_cancel`` the bridge.
    then_place: list[OrderRequest] = field(default_factory=list)
    then_cancel: list[str] = field(default_factory=list)
    # Sent only when a ``then_place`` order is refused (by the venue or the risk gate): the
    # cancelled close-position stop put back at its trigger, which still protected when
    # planned, so a refusal does not leave the position without it.
    restore: list[OrderRequest] = field(default_factory=list)
    # The part of the position no resting order can protect (a venue without close-position
    # stops, a position off its step): 0 when the plan covers the whole position.
    remainder: Decimal = ZERO


@dataclass(slots=True)
class SizePlan:
    leverage: int | None = None  # new leverage setting, None = keep
    reduce: list[OrderRequest] = field(default_factory=list)
    increase: list[OrderRequest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The part of the position a close or cut leaves because no order can carry it (off the
    # venue's step or below its minimum): 0 when the orders trade what was asked.
    remainder: Decimal = ZERO
    # Says why a reduction trades more than the decision asked (widened to the venue's minimum
    # order, or to the whole position where less than the minimum would remain); "" otherwise.
    rounded: str = ""
    # Says why an increase is not sent while a kept stop covers the position whole
    # (``plan_size`` ``kept_whole``); "" otherwise.
    held_back: str = ""


@dataclass(frozen=True, slots=True)
class StopSizing:
    """How a protective order covers a position of ``size`` (absolute) on one venue."""

    amount: Decimal | None  # the order's size; None: close-position, or no order possible
    close_position: bool
    remainder: Decimal  # what the order leaves unprotected (0: the whole position)

    @property
    def placeable(self) -> bool:
        return self.close_position or self.amount is not None


def stop_sizing(size: Decimal, instrument: Instrument | None, close_position: bool) -> StopSizing:
    """The order that protects a position of absolute ``size``: sized to it when an order of
    that size is accepted; else a close-position order where the venue takes one (it closes
    the whole position whatever its size); else sized to the part on the step (the remainder
    below the step, or the whole position below the minimum, stays unprotected and named)."""
    if instrument is None or instrument.orderable(size):
        return StopSizing(size, False, ZERO)
    if close_position:
        return StopSizing(None, True, ZERO)
    part = instrument.orderable_part(size)
    return StopSizing(part if part > 0 else None, False, size - part)


def exchange_setting(
    target_leverage: Decimal, instrument: Instrument, notional: Decimal, floor: int = 1
) -> int:
    """The leverage setting for a target (:func:`leverage_setting`), at least ``floor`` (see
    :func:`bot.policy.leverage.setting_floor`), within [1, bracket max]."""
    setting = max(leverage_setting(target_leverage), floor)
    return max(1, min(setting, int(instrument.max_leverage_for(notional))))


def plan_size(
    decision: Decision,
    current_qty: Decimal,
    current_setting: Decimal,
    instrument: Instrument,
    price: Decimal,
    tolerance: Decimal,
    new_id: IdFactory,
    floor: int = 1,
    *,
    kept_whole: bool = False,
) -> SizePlan:
    """Orders that bring ``current_qty`` to the decision's size (``floor``: the lowest setting
    an increase may use, :func:`bot.policy.leverage.setting_floor` of the position held).

    ``kept_whole``: the position held is off the venue's step (or below its minimum), the venue
    takes no close-position stop, and a resting stop kept from before covers it whole
    (:func:`_protects_more`). An increase that leaves the position still off the step is then
    not sent: its stop would be sized to the part on the step, which covers more than the kept
    stop, so the kept one would be replaced and the part below the step left with none: the
    bot's own increase would turn a fully protected position into a partly unprotected one."""
    plan = SizePlan()
    target = decision.target_qty
    sym = decision.symbol
    if current_qty != 0 and (target == 0 or (target > 0) != (current_qty > 0)):
        if not _close(plan, new_id, sym, current_qty, instrument):
            return plan  # a remainder no order can carry is still held: no flip through it
        current_qty = ZERO
    if target == 0:
        return plan
    delta = target - current_qty
    larger = max(abs(target), abs(current_qty))
    tolerance = _tolerance(decision, current_qty, instrument, tolerance)
    if delta == 0 or (current_qty != 0 and abs(delta) < tolerance * larger):
        if delta != 0:
            plan.notes.append(f"size change {abs(delta)} below tolerance {tolerance}")
        return plan
    floor = floor if current_qty != 0 else 1  # (closed above for a flip: nothing held)
    setting = exchange_setting(decision.target_leverage, instrument, abs(target) * price, floor)
    increasing = abs(target) > abs(current_qty)
    if increasing and setting < floor:
        # The bracket at the target's notional is below the setting held, and the venue does
        # not lower it (see setting_floor): the decision is sized within it
        # (bot.policy.leverage.within_held_setting), so only a price that moved past it gets
        # here. Asking would be refused, and the increase with it.
        plan.notes.append(
            f"increase to {abs(target)} needs the isolated setting {floor} held lowered to "
            f"{setting}, which the exchange refuses: not sent"
        )
        return plan
    if Decimal(setting) != current_setting:
        plan.leverage = setting
    if not increasing:
        _reduce(plan, new_id, sym, current_qty, abs(delta), instrument)
        return plan
    if not decision.allow_increase:
        plan.notes.append("increase not allowed by the policy")
        return plan
    amount = instrument.floor_qty(abs(delta))
    if amount < instrument.min_qty or amount * price < instrument.min_notional:
        plan.notes.append(f"increase {amount} below the exchange minimum")
        return plan
    if kept_whole and not instrument.orderable(abs(current_qty) + amount):
        plan.held_back = (
            f"increase {plain(amount)} not sent: position {plain(abs(current_qty))} is covered "
            f"whole by a kept stop-loss, and {plain(abs(current_qty) + amount)} would be off the "
            f"exchange's quantity step {instrument.step_size} (minimum {instrument.min_qty}), "
            "which takes no close-position stop: a new stop could not cover it whole"
        )
        plan.notes.append(plan.held_back)
        return plan
    side = OrderSide.BUY if delta > 0 else OrderSide.SELL
    plan.increase.extend(market_orders(new_id, sym, side, OrderPurpose.ENTRY, amount, instrument))
    return plan


def size_after(
    decision: Decision,
    current_qty: Decimal,
    instrument: Instrument,
    price: Decimal,
    tolerance: Decimal,
    *,
    kept_whole: bool = False,
) -> Decimal:
    """The position :func:`plan_size`'s orders leave once filled: ``current_qty`` where it
    trades nothing (a change below the tolerance, an increase not allowed, below the venue's
    minimum or held back for a kept stop), moved by each order it plans otherwise. The plan
    itself, so the two cannot disagree (its client ids are placeholders: these orders are never
    sent); the leverage setting it may change does not move the size."""
    plan = plan_size(
        decision,
        current_qty,
        ZERO,
        instrument,
        price,
        tolerance,
        _unsent_id,
        kept_whole=kept_whole,
    )
    after = current_qty
    for req in (*plan.reduce, *plan.increase):
        if req.amount is not None:  # (market orders always carry their amount)
            after += req.amount if req.side is OrderSide.BUY else -req.amount
    return after


def _unsent_id(purpose: OrderPurpose) -> str:
    return "unsent"


def _tolerance(
    decision: Decision, current_qty: Decimal, instrument: Instrument, tolerance: Decimal
) -> Decimal:
    """The rebalance tolerance for a change from ``current_qty`` to the decision's size: 0 for
    the changes that are always traded, else ``tolerance``."""
    target = decision.target_qty
    largest = instrument.largest_order
    if largest is not None and abs(current_qty) > largest >= abs(target):
        return ZERO  # above what one order can close or one stop protect: always cut
    if decision.participation_capped and abs(target) > abs(current_qty):
        return ZERO  # one step of a larger increase, worked over the ticks
    if decision.above_cap and abs(current_qty) > abs(target):
        return ZERO  # held above a hard cap (a price move): a cap, not a preference
    return tolerance


def _tradable(held: Decimal, instrument: Instrument) -> Decimal:
    """What orders can trade of a position of absolute ``held``: all of it when an order of
    that size is accepted, else the part on the step (0 below the minimum)."""
    return held if instrument.orderable(held) else instrument.orderable_part(held)


def _close(
    plan: SizePlan, new_id: IdFactory, sym: str, current_qty: Decimal, instrument: Instrument
) -> bool:
    """Reduce-only orders that close the position; False when a remainder no order can carry
    stays held (named in the plan)."""
    held = abs(current_qty)
    part = _tradable(held, instrument)
    side = OrderSide.SELL if current_qty > 0 else OrderSide.BUY
    if part > 0:
        plan.reduce.extend(market_orders(new_id, sym, side, OrderPurpose.CLOSE, part, instrument))
    if part == held:
        return True
    plan.remainder = held - part
    plan.notes.append(_remainder_note(held, part, instrument))
    return False


def _reduce(
    plan: SizePlan,
    new_id: IdFactory,
    sym: str,
    current_qty: Decimal,
    cut: Decimal,
    instrument: Instrument,
) -> None:
    """Reduce-only orders that cut at least ``cut`` off the position, rounded toward less
    exposure into orders the venue accepts (:meth:`Instrument.reduction`: up to the step, at
    least the minimum quantity, the whole position when the rest would be below the minimum),
    at most what orders can trade of it."""
    held = abs(current_qty)
    most = _tradable(held, instrument)
    amount = instrument.reduction(held, cut)
    if most != held and amount == most:
        plan.remainder = held - most
        plan.notes.append(_remainder_note(held, most, instrument))
    elif amount > instrument.ceil_qty(cut):
        # A cut below the minimum order, or one that would leave less than it, is widened: a
        # smaller order is refused by the venue every tick (the position stays above what the
        # decision allows) and a sliver below the minimum is a position no order can close.
        plan.rounded = (
            f"reduction {instrument.ceil_qty(cut)} of position {held} widened to {amount}"
            f"{' (closed)' if amount == held else ''}: the exchange's minimum order is "
            f"{instrument.min_qty}, reduce-only orders too, and a position below it could not "
            "be closed"
        )
        plan.notes.append(plan.rounded)
    if amount > 0:
        side = OrderSide.SELL if current_qty > 0 else OrderSide.BUY
        plan.reduce.extend(
            market_orders(new_id, sym, side, OrderPurpose.REDUCE, amount, instrument)
        )


def uncarried(size: Decimal, instrument: Instrument) -> str:
    """Why no order can close all of a position of absolute ``size`` (one that
    :meth:`Instrument.orderable` refuses): below the venue's minimum order, none of it; off
    its quantity step, the part below the step."""
    part = instrument.orderable_part(size)
    if part == 0:
        return (
            f"the position {plain(size)} is below the exchange's minimum order "
            f"{instrument.min_qty}: no order can close any of it"
        )
    return (
        f"{plain(size - part)} of the position {plain(size)} is off the exchange's quantity "
        f"step {instrument.step_size} (minimum {instrument.min_qty}): no order can close it"
    )


def _remainder_note(size: Decimal, part: Decimal, instrument: Instrument) -> str:
    return (
        f"position {size} is off the exchange's quantity step {instrument.step_size} "
        f"(minimum {instrument.min_qty}): orders trade {part}; {size - part} stays, no order "
        "can carry it"
    )


def plan_protection(
    symbol: str,
    position_qty: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    resting: Sequence[Order],
    tolerance: Decimal,
    new_id: IdFactory,
    *,
    instrument: Instrument | None = None,
    close_position: bool = False,
    still_protects: StillProtects | None = None,
    unflagged: Collection[str] = (),
) -> ProtectionPlan:
    """Orders that leave exactly the wanted protective orders resting for ``position_qty``.

    With ``instrument``, a position no order can carry is covered as :func:`stop_sizing` says
    (``close_position``: the venue takes close-position stops). ``still_protects`` says which
    resting orders are valid protection now; without it none is taken for valid (a
    close-position stop is then always moved as wanted, and never put back).

    ``unflagged``: client ids of the bot's stop-losses resting without the venue's closing flag
    (``Order.close_on_trigger`` False: placed by an older version of the bot, which sent none;
    Bybit cancels such a stop when it triggers on an account short of free margin). Each is
    replaced whatever its trigger, the new stop placed before it is cancelled. Beside a stop
    that carries the flag, one reported without it is never the one kept."""
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
    holder = close_position_slot_holder(resting, side) if close_position else None
    if holder is not None:
        # the bot's own cannot rest beside it (Binance -4130), and it is not the bot's to cancel
        _note_hand_slot(plan, holder, size, instrument)
        close_position = False
    sizing = stop_sizing(size, instrument, close_position)
    plan.remainder = sizing.remainder
    # The take-profit is no protection: where the stop closes the whole position, it is sized
    # to the part on the step, so it never competes with the stop for the venue's one
    # close-position order per side (Binance -4130, whose scope by type is not documented).
    take_sizing = stop_sizing(size, instrument, False) if sizing.close_position else sizing
    wants = (
        (_STOP_LOSS, _STOP_MARKET, stop_loss, stops, sizing),
        (_TAKE_PROFIT, _TAKE_PROFIT_MARKET, take_profit, takes, take_sizing),
    )
    for purpose, otype, price, existing, how in wants:
        keep, cancel = _keep_one(existing, side, how, price, tolerance, unflagged)
        if len(existing) > 1:
            plan.notes.append(
                f"{len(existing)} resting {purpose.name.lower()} orders: reduced to one"
            )
        _note_changed_triggers(plan, existing)
        kept = (
            None
            if keep is not None or price is None
            else _protects_more(purpose, cancel, size, how, still_protects, unflagged)
        )
        if kept is not None:
            _keep_protecting(plan, kept, cancel, price, size, how, instrument)
            continue
        if unflagged and price is not None and how.placeable:
            _note_unflagged(plan, cancel, unflagged)
        if price is None or keep is not None or not how.placeable:
            plan.cancel.extend(o.client_id for o in cancel)
            continue
        if how.close_position and _by_hand_whole(resting, side, otype):
            # The venue holds one close-position order per side (Binance -4130): one placed by
            # hand already closes the whole position; the verification counts it.
            _standing(
                plan,
                f"hand whole {purpose.name} {side.value}",
                f"a close-position {purpose.name.lower()} placed by hand rests on this side: "
                "the exchange takes one per side; it covers the position",
            )
            plan.cancel.extend(o.client_id for o in cancel)
            continue
        wanted = _Wanted(symbol, side, otype, purpose, price)
        _replace(plan, wanted, cancel, how, size, instrument, new_id, still_protects)
    if plan.remainder and instrument is not None and plan.place:
        plan.notes.append(
            f"position {size} is off the exchange's quantity step {instrument.step_size} "
            f"(minimum {instrument.min_qty}) and the exchange has no close-position stop: "
            f"protective orders cover {size - plan.remainder}, {plan.remainder} unprotected"
        )
    return plan


def _covers(order: Order, size: Decimal) -> Decimal:
    """How much of a position of absolute ``size`` a resting stop on its closing side closes:
    all of it for a close-position stop, else its amount (at most the position)."""
    if order.close_position:
        return size
    return min(order.amount if order.amount is not None else ZERO, size)


def _protects_more(
    purpose: OrderPurpose,
    existing: Sequence[Order],
    size: Decimal,
    how: StopSizing,
    still_protects: StillProtects | None,
    unflagged: Collection[str],
) -> Order | None:
    """The resting stop-loss to keep instead of the one wanted: the first of those that still
    protect the position that covers more of it than the order ``how`` can place (nothing,
    below the venue's minimum; the part on the step, off it, on a venue without close-position
    stops). A stop of the bot's is never cancelled for less protection, or for none: the wanted
    trigger is not worth a moment, or a part, without a stop. One resting without the venue's
    closing flag (``unflagged``) is replaced as :func:`plan_protection` says, unless no order
    at all can replace it. ``None``: the wanted order covers as much (the usual case), or
    ``purpose`` is not the stop-loss (a take-profit is no protection)."""
    if purpose is not _STOP_LOSS or still_protects is None:
        return None
    wanted = size if how.close_position else (how.amount if how.amount is not None else ZERO)
    best: Order | None = None
    most = wanted
    for o in _flagged_first(existing):
        if how.placeable and o.client_id in unflagged:
            continue
        covers = _covers(o, size)
        if covers > most and still_protects(o):
            best, most = o, covers
    return best


def _keep_protecting(
    plan: ProtectionPlan,
    kept: Order,
    cancel: Sequence[Order],
    wanted: Decimal | None,
    size: Decimal,
    how: StopSizing,
    instrument: Instrument | None,
) -> None:
    """Keep ``kept`` (see :func:`_protects_more`), cancel the other resting stops of the
    purpose (duplicates, or none that protects as much), and say why, once while it lasts."""
    plan.cancel.extend(o.client_id for o in cancel if o is not kept)
    covers = _covers(kept, size)
    plan.remainder = size - covers
    held = plain(size)
    if not how.placeable:
        why = (
            f"no order can replace it: position {held} is below the exchange's minimum order "
            f"{_minimum(instrument)}"
        )
    else:
        step = instrument.step_size if instrument is not None else "?"
        part = plain(how.amount) if how.amount is not None else "none"
        why = (
            f"a new one could cover only {part} of position {held} (off the exchange's "
            f"quantity step {step}, minimum {_minimum(instrument)}, and the exchange takes no "
            "close-position stop)"
        )
    _standing(
        plan,
        f"kept {kept.client_id} {kept.trigger_price} {size}",  # the wanted price moves
        f"stop-loss {kept.client_id} kept at {kept.trigger_price} (wanted {wanted}): it still "
        f"protects {plain(covers)} of position {held}, and {why}; it stays until it no "
        "longer protects or the position changes",
    )


def _note_changed_triggers(plan: ProtectionPlan, existing: Sequence[Order]) -> None:
    """Say which of the bot's stops is replaced for a trigger changed outside the bot."""
    for o in existing:
        if own_trigger_changed(o) and o.trigger_by is not None:
            plan.notes.append(
                f"stop-loss {o.client_id} is triggered on the {o.trigger_by.value} price "
                "(changed outside the bot): replaced by one triggered on the mark"
            )


def _keep_one(
    existing: Sequence[Order],
    side: OrderSide,
    how: StopSizing,
    price: Decimal | None,
    tolerance: Decimal,
    unflagged: Collection[str],
) -> tuple[Order | None, list[Order]]:
    """The resting order of one purpose to keep (the first that is as wanted; none of
    ``unflagged``) and the others, to cancel."""
    keep = None
    cancel: list[Order] = []
    for o in _flagged_first(existing):
        if (
            keep is None
            and price is not None
            and o.client_id not in unflagged
            and _matches(o, side, how, price, tolerance)
        ):
            keep = o
        else:
            cancel.append(o)
    return keep, cancel


def _flagged_first(orders: Sequence[Order]) -> Sequence[Order]:
    """``orders`` with those the venue reports without its closing flag last (stable): where
    one with the flag rests too (the replacement of one without, placed when the answer to it
    was lost), it is the one kept. Unchanged on a venue without such a flag (all ``None``)."""
    if not any(o.close_on_trigger is False for o in orders):
        return orders
    return sorted(orders, key=lambda o: o.close_on_trigger is False)


def _note_unflagged(
    plan: ProtectionPlan, cancel: Sequence[Order], unflagged: Collection[str]
) -> None:
    """Say why a stop of the bot's that still protects is replaced (see ``plan_protection``)."""
    for o in cancel:
        if o.client_id in unflagged:
            plan.notes.append(
                f"stop-loss {o.client_id} rests without the exchange's closing flag (placed by "
                "an older version of the bot): the exchange cancels such a stop instead of "
                "carrying it out when it triggers on an account short of free margin; replaced "
                "by one that carries it, placed first (this one is cancelled once it rests)"
            )


@dataclass(frozen=True, slots=True)
class _Wanted:
    """One protective order wanted for a position, whatever its size."""

    symbol: str
    side: OrderSide
    type: OrderType
    purpose: OrderPurpose
    trigger: Decimal

    def order(self, cid: str, amount: Decimal | None, whole: bool) -> OrderRequest:
        return OrderRequest(
            client_id=cid,
            symbol=self.symbol,
            side=self.side,
            type=self.type,
            purpose=self.purpose,
            amount=amount,
            reduce_only=not whole,
            trigger_price=self.trigger,
            close_position=whole,
        )


def _replace(
    plan: ProtectionPlan,
    wanted: _Wanted,
    cancel: list[Order],
    sizing: StopSizing,
    size: Decimal,
    instrument: Instrument | None,
    new_id: IdFactory,
    still_protects: StillProtects | None,
) -> None:
    """Place ``wanted`` (sized as ``sizing`` says) and cancel the resting ``cancel``: new
    before old, except where the venue holds one close-position order per side and type."""
    purpose = wanted.purpose
    blocking = [o for o in cancel if o.close_position and o.side is wanted.side]
    if not (sizing.close_position and blocking):
        plan.cancel.extend(o.client_id for o in cancel)
        plan.place.append(wanted.order(new_id(purpose), sizing.amount, sizing.close_position))
        return
    # The venue refuses a second close-position order on this side (Binance -4130): the old
    # one goes first; a stop on the part on the step bridges the swap.
    part = instrument.orderable_part(size) if instrument is not None else ZERO
    valid = [
        o
        for o in blocking
        if purpose is _STOP_LOSS
        and o.trigger_price is not None
        and still_protects is not None
        and still_protects(o)
    ]
    if valid and part == 0:
        # No order can carry any part of the position to bridge the swap: the stop that still
        # protects stays where it is (moved, a refusal of the new one left the position naked
        # until the next check, and the verification closed it at market).
        kept = valid[0]
        plan.cancel.extend(o.client_id for o in cancel if o is not kept)
        _standing(
            plan,
            f"kept {kept.client_id} {kept.trigger_price} {size}",  # the wanted price moves
            f"close-position {purpose.name.lower()} {kept.client_id} kept at "
            f"{kept.trigger_price} (wanted {wanted.trigger}): it still protects, and position "
            f"{size} is below the exchange's minimum order {_minimum(instrument)}, so no order "
            "can protect it while the close-position order is replaced",
        )
        return
    if purpose is _STOP_LOSS and part > 0:
        bridge = wanted.order(new_id(purpose), part, False)
        plan.place.append(bridge)
        plan.then_cancel.append(bridge.client_id)
    plan.cancel.extend([o.client_id for o in blocking])
    plan.cancel.extend([o.client_id for o in cancel if o not in blocking])
    plan.then_place.append(wanted.order(new_id(purpose), None, True))
    if valid and valid[0].trigger_price is not None:
        old = replace(wanted, trigger=valid[0].trigger_price)
        plan.restore.append(old.order(new_id(purpose), None, True))


def _minimum(instrument: Instrument | None) -> str:
    return str(instrument.min_qty) if instrument is not None else "?"


def _note_hand_slot(
    plan: ProtectionPlan, holder: Order, size: Decimal, instrument: Instrument | None
) -> None:
    """``holder``, a close-position stop placed by hand that does not count as protection,
    holds the venue's one close-position stop on this side (Binance -4130), and the bot never
    cancels an order placed by hand: a position no order can carry is protected as on a venue
    without close-position stops (the part on the step; the remainder named)."""
    if instrument is None or instrument.orderable(size):
        return  # a stop sized to the whole position protects it: nothing to say
    why = by_hand_shortfall(holder)
    _standing(
        plan,
        f"hand slot {holder.client_id} {size} {why}",
        f"close-position stop {holder.client_id} placed by hand does not count as "
        f"protection ({why}) and holds the exchange's one close-position "
        "stop on this side: the bot protects the part on the step and leaves the order alone",
    )


def _standing(plan: ProtectionPlan, key: str, note: str) -> None:
    """Add ``note``, which describes a condition that lasts (keyed ``key``) while the plan
    changes nothing about it: recorded once while it lasts (see ``ProtectionPlan.standing``)."""
    plan.notes.append(note)
    plan.standing[note] = key


def _by_hand_whole(resting: Sequence[Order], side: OrderSide, otype: OrderType) -> bool:
    """A close-position order placed by hand (not the bot's) rests on ``side``."""
    return any(
        o.purpose is None and o.close_position and o.side is side and o.type is otype
        for o in resting
    )


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


def _matches(
    order: Order, side: OrderSide, sizing: StopSizing, price: Decimal, tol: Decimal
) -> bool:
    if order.side is not side or order.trigger_price is None or own_trigger_changed(order):
        return False
    if not order.close_position and (sizing.close_position or order.amount != sizing.amount):
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
