"""Margin cap: the increases of one tick sized to the balance the account has available.

The venue refuses an order whose initial margin (and fee) exceeds the available balance
(Binance -2019 "Margin is insufficient", Bybit 110007; :class:`bot.sim.exchange.SimulatedExchange`
models it): without this step a fully allocated account would send such an order every tick,
and which contract got its size would depend on the order the contracts are processed in. The
increases are sized within the available balance instead, every one scaled by the same factor
(rounded down to the step; a new position below the venue's minimum order to none), and the
decision says so. Like the gross cap, it never forces a
reduction.

The available balance is the venue's (Binance ``availableBalance``: margin balance, wallet plus
unrealised PnL in cross, less the initial margin of the positions and of open orders; the
exchange facts' asset row reads ``marginBalance 10010.0``, ``initialMargin 61.0``,
``availableBalance 9949.0``), read this tick. Against it, each increase is measured as the
engine sends it (decision by decision; each contract's reduce-only orders go out before its
increase) and at its worst:

* new quantity at the higher of last and mark, moved by ``slippage`` and one tick (the venue
  trades on its tick, :meth:`~bot.domain.instrument.Instrument.fill_on_tick`) against the
  trader: its initial margin at the leverage setting the planner will use for the sized decision
  (:func:`bot.engine.planner.exchange_setting` of its scaled target leverage; a lower setting
  needs more margin, which is why the settings are recomputed after scaling), its taker fee,
  and the open loss of filling away from the mark (``|last - mark|`` plus the slippage: a cross
  account's unrealised loss at once, Binance's "open loss" in the cost of an order);
* a held position whose leverage setting is lowered for the increase: the margin its held part
  needs at the new setting beyond what it holds (isolated: the isolated margin; cross: its
  initial margin at the old setting); a raised setting is not counted as freeing anything;
* a reduction frees margin only for the increases sent after it (its own contract's, the later
  contracts'), counted at its worst: the margin it releases, less its taker fee and the loss of
  filling ``slippage`` and a tick beyond the worse of last and mark. A partial reduction below the
  rebalance tolerance is not sent, so it frees nothing.

Kept :data:`MARGIN_ROOM` inside the balance: the venue rounds margins up, and prices move
between the read and the order. The venue stays the backstop (a refusal is a recorded event).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from bot.domain.decision import Decision
from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.position import Position

ZERO = Decimal(0)
ONE = Decimal(1)
BPS = Decimal(10_000)
# Sized this fraction inside the available balance (rounding of the venue's margins, prices
# moving between the read and the order).
MARGIN_ROOM = Decimal("0.999")
_ISOLATED = MarginMode.ISOLATED
# Halvings of the search for the factor at most (it stops once the sizes no longer change).
_SEARCH_STEPS = 40
# The venue's leverage setting the planner uses for a decision sized at a price
# (:func:`bot.engine.planner.exchange_setting` of its target leverage and notional).
SettingOf = Callable[[Decision, Decimal], int]


@dataclass(frozen=True, slots=True)
class _Leg:
    """One decision's orders as the engine sends them, measured for margin."""

    decision: Decision
    instrument: Instrument
    base: Decimal  # what is kept of the position under the increase (0: opens from flat)
    more: Decimal  # the increase, quantity (0: none sent)
    freed: Decimal  # margin its reduction frees first (may be negative: fees, slippage)
    last: Decimal  # the planner's price
    mark: Decimal
    fill: Decimal  # the worst fill of new quantity
    open_loss: Decimal  # per unit of new quantity
    held: Position | None  # the position kept under the increase (same side), if any


def cap_to_margin(
    decisions: Sequence[Decision],
    positions: Mapping[str, Position],
    lasts: Mapping[str, Decimal],
    marks: Mapping[str, Decimal],
    instruments: Mapping[str, Instrument],
    available: Decimal | None,
    *,
    setting_of: SettingOf,
    slippage: Decimal,
    tolerance: Decimal,
) -> list[Decision]:
    """The decisions, in the order the engine sends them, with their increases scaled so that
    every increase fits the available balance when it goes out.

    ``positions``: as read this tick; ``lasts``: the price each decided contract is sized and
    filled at (a decision without one sends nothing); ``marks``: the marks read this tick;
    ``available``: the venue's available balance, ``None`` when unknown (then no increase is
    sent, and the decisions say why); ``setting_of``: the leverage setting the planner uses
    for a decision; ``slippage``: the fraction a fill may move against the trader;
    ``tolerance``: the planner's rebalance tolerance (smaller changes are not sent).
    """
    if not sends_increase(decisions, positions, lasts, instruments, tolerance):
        return list(decisions)
    legs: list[_Leg] = []
    for d in decisions:
        leg = _leg(d, positions.get(d.symbol), lasts, marks, instruments, slippage, tolerance)
        if leg is not None:
            legs.append(leg)
    if not any(leg.more > 0 for leg in legs):
        return list(decisions)
    if available is None:
        why = "margin: available balance unknown (not in the venue's answer): no increase -> size "
        return _scaled(decisions, legs, ZERO, why)
    room = available * MARGIN_ROOM
    whole = {leg.decision.symbol: leg.decision for leg in legs}
    if _fits(legs, whole, room, setting_of):
        return list(decisions)
    # The common factor with the settings of the whole increases held; a cut lowers the target
    # leverage and with it (one step of headroom) the setting, which needs more margin: then
    # the largest factor that fits with the settings of its own sizes is searched below it.
    settings = {leg.decision.symbol: _setting(leg, leg.decision, setting_of) for leg in legs}
    need = _need(legs, settings)
    factor = _factor(legs, settings, room)
    if factor > 0 and not _fits_at(legs, factor, room, setting_of):
        factor = _search(legs, factor, room, setting_of)
    prefix = (
        f"margin: available {available:.2f} < {need:.2f} needed by the increases (initial "
        f"margin at the leverage setting, taker fee, {float(slippage * BPS):g} bps slippage): "
        f"increase scaled by {factor:.4f} -> size "
    )
    return _scaled(decisions, legs, factor, prefix)


def sends_increase(
    decisions: Sequence[Decision],
    positions: Mapping[str, Position],
    lasts: Mapping[str, Decimal],
    instruments: Mapping[str, Instrument],
    tolerance: Decimal,
) -> bool:
    """Whether any decision sends an increase (a cheap first look: most ticks send none;
    ``False`` means :func:`cap_to_margin` leaves every decision as it is)."""
    for d in decisions:
        target = d.target_qty
        if target == 0 or not d.allow_increase:
            continue
        last = lasts.get(d.symbol)
        if last is None:
            continue
        pos = positions.get(d.symbol)
        have = pos.qty if pos is not None else ZERO
        base = abs(have) if have * target > 0 else ZERO
        more = abs(target) - base
        if more > 0 and _sent(d, instruments[d.symbol], base, more, last, tolerance):
            return True
    return False


def _leg(
    d: Decision,
    pos: Position | None,
    lasts: Mapping[str, Decimal],
    marks: Mapping[str, Decimal],
    instruments: Mapping[str, Instrument],
    slip: Decimal,
    tolerance: Decimal,
) -> _Leg | None:
    """The margin view of one decision's orders (``None``: it sends nothing, no price)."""
    last = lasts.get(d.symbol)
    if last is None:
        return None
    mark = marks.get(d.symbol, last)
    inst = instruments[d.symbol]
    have = pos.qty if pos is not None and pos.is_open else ZERO
    target = d.target_qty
    high, low = (last, mark) if last > mark else (mark, last)
    # ... and one tick further: the venue trades on its tick (a fill rounded against the trader)
    fill = high * (ONE + slip) + inst.tick_size
    open_loss = abs(last - mark) + high * slip + inst.tick_size
    reduced = ZERO
    if have != 0 and (target == 0 or (target > 0) != (have > 0)):
        # closed before the other side opens: the part on the venue's step (a remainder off
        # the step stays, with its margin)
        reduced = inst.orderable_part(abs(have))
    elif abs(target) < abs(have) and abs(have) - abs(target) >= tolerance * abs(have):
        # as the planner sends it: at least the minimum order, all of it rather than a sliver
        reduced = inst.reduction(abs(have), abs(have) - abs(target))
    freed = ZERO
    if reduced > 0 and pos is not None:
        freed = _freed(pos, inst, reduced, mark, low, fill, open_loss, slip)
    base = abs(have) if have * target > 0 else ZERO
    more = abs(target) - base if target != 0 and abs(target) > base else ZERO
    if more > 0 and not _sent(d, inst, base, more, last, tolerance):
        more = ZERO
    held = pos if base > 0 else None
    return _Leg(d, inst, base, more, freed, last, mark, fill, open_loss, held)


def _freed(
    pos: Position,
    inst: Instrument,
    qty: Decimal,
    mark: Decimal,
    low: Decimal,
    fill_high: Decimal,
    open_loss: Decimal,
    slip: Decimal,
) -> Decimal:
    """What reducing ``pos`` by ``qty`` adds to the available balance, at its worst."""
    fee = qty * fill_high * inst.taker_fee
    if pos.margin_mode is _ISOLATED:
        # Its share of the isolated margin comes back, with the PnL the fill realises.
        exit_price = low * (ONE - slip) - inst.tick_size if pos.qty > 0 else fill_high
        realised = qty * (exit_price - pos.entry_price) * pos.sign
        return pos.isolated_margin * qty / abs(pos.qty) + realised - fee
    # Cross: its initial margin at the mark comes back; its unrealised PnL was already in the
    # balance, only the fill's distance from the mark is lost.
    setting = pos.leverage if pos.leverage > 0 else ONE
    return qty * mark / setting - fee - qty * open_loss


def _sent(
    d: Decision, inst: Instrument, base: Decimal, more: Decimal, last: Decimal, tol: Decimal
) -> bool:
    """Whether the planner sends this increase (as :func:`bot.engine.planner.plan_size`)."""
    if not d.allow_increase:
        return False
    if base > 0 and more < tol * (base + more) and not d.participation_capped:
        return False  # below the rebalance tolerance (a participation step is always sent)
    amount = inst.floor_qty(more)
    return not (amount < inst.min_qty or amount * last < inst.min_notional)


def _setting(leg: _Leg, d: Decision, setting_of: SettingOf) -> Decimal:
    return Decimal(setting_of(d, leg.last)) if leg.more > 0 and d.target_qty != 0 else ONE


def _held_extra(leg: _Leg, setting: Decimal) -> Decimal:
    """Margin the held part needs beyond what it holds once the setting is ``setting``."""
    pos = leg.held
    if pos is None or setting == pos.leverage:
        return ZERO
    if pos.margin_mode is _ISOLATED:
        extra = abs(pos.qty) * pos.entry_price / setting - pos.isolated_margin
    else:
        before = pos.leverage if pos.leverage > 0 else ONE
        extra = abs(pos.qty) * leg.mark * (ONE / setting - ONE / before)
    return extra if extra > ZERO else ZERO


def _unit(leg: _Leg, setting: Decimal) -> Decimal:
    """Balance one unit of new quantity takes: margin at the setting, fee, open loss."""
    return leg.fill / setting + leg.fill * leg.instrument.taker_fee + leg.open_loss


def _factor(legs: Sequence[_Leg], settings: Mapping[str, Decimal], room: Decimal) -> Decimal:
    """The largest common factor with which every increase fits when it goes out, the
    settings held: the tightest over the prefixes of the engine's order."""
    free = room
    fixed = ZERO  # what the increases so far take whatever the factor
    per = ZERO  # what they take per unit of factor
    best = ONE
    for leg in legs:
        free += leg.freed
        if leg.more == 0:
            continue
        setting = settings[leg.decision.symbol]
        fixed += _held_extra(leg, setting)
        per += leg.more * _unit(leg, setting)
        bound = (free - fixed) / per
        if bound < best:
            best = bound
    return best if best > ZERO else ZERO


def _fits(
    legs: Sequence[_Leg], sized: Mapping[str, Decision], room: Decimal, setting_of: SettingOf
) -> bool:
    """Whether every increase of the sized decisions fits when it goes out."""
    free = room
    for leg in legs:
        free += leg.freed
        if leg.more == 0:
            continue
        d = sized[leg.decision.symbol]
        more = abs(d.target_qty) - leg.base
        if more <= 0:
            continue
        setting = _setting(leg, d, setting_of)
        free -= _held_extra(leg, setting) + more * _unit(leg, setting)
        if free < 0:
            return False
    return True


def _fits_at(legs: Sequence[_Leg], factor: Decimal, room: Decimal, setting_of: SettingOf) -> bool:
    return _fits(
        legs, {leg.decision.symbol: _resize(leg, factor) for leg in legs}, room, setting_of
    )


def _search(legs: Sequence[_Leg], above: Decimal, room: Decimal, setting_of: SettingOf) -> Decimal:
    """The largest factor below ``above`` (which does not fit) found to fit, by halving; 0
    (no increase) always fits."""
    lo, hi = ZERO, above
    for _ in range(_SEARCH_STEPS):
        if all(_qty(leg, lo) == _qty(leg, hi) for leg in legs):
            break
        mid = (lo + hi) / 2
        if _fits_at(legs, mid, room, setting_of):
            lo = mid
        else:
            hi = mid
    return lo


def _need(legs: Sequence[_Leg], settings: Mapping[str, Decimal]) -> Decimal:
    """What the whole increases take, less what the reductions free (for the reason)."""
    total = ZERO
    for leg in legs:
        total -= leg.freed
        if leg.more > 0:
            setting = settings[leg.decision.symbol]
            total += _held_extra(leg, setting) + leg.more * _unit(leg, setting)
    return total


def _qty(leg: _Leg, factor: Decimal) -> Decimal:
    """The leg's size with its increase scaled by ``factor``: a position opened below the
    venue's minimum order is none (no order opens it)."""
    more = leg.instrument.floor_qty(leg.more * factor)
    if leg.base == 0 and more < leg.instrument.min_qty:
        return ZERO
    return leg.base + more


def _below_minimum(leg: _Leg, factor: Decimal, qty: Decimal) -> str:
    """What the reason adds when a new position scaled below the minimum order became none."""
    more = leg.instrument.floor_qty(leg.more * factor)
    if qty != 0 or more == 0:
        return ""
    return f" ({more} is below the exchange's minimum order {leg.instrument.min_qty})"


def _resize(leg: _Leg, factor: Decimal) -> Decision:
    """The decision sized with ``factor`` (its leverage as the reason's will be)."""
    d = leg.decision
    if leg.more == 0 or factor >= ONE:
        return d
    qty = _qty(leg, factor)
    return d.resized(qty, qty / abs(d.target_qty), "")


def _scaled(
    decisions: Sequence[Decision], legs: Sequence[_Leg], factor: Decimal, prefix: str
) -> list[Decision]:
    scaled = {}
    for leg in legs:
        if leg.more == 0:
            continue
        d = leg.decision
        qty = _qty(leg, factor)
        after = _below_minimum(leg, factor, qty)
        scaled[d.symbol] = d.resized(qty, qty / abs(d.target_qty), prefix, after)
    return [scaled.get(d.symbol, d) for d in decisions]
