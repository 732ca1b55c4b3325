"""Volume participation cap: no tick adds more to a position than a fraction of the market's
recent traded volume (``[orders] max_participation``).

A market order that is a large share of the volume walks the book (in simulation it pays the
square-root impact of :mod:`bot.sim.slippage`). With the cap, an increase is worked over the
ticks: each tick adds at most ``room = max_participation x avg_volume`` (base units, rounded
down to the step), where ``avg_volume`` is the mean traded volume per decision candle over the
volatility estimator's window (:attr:`bot.domain.market.MarketSnapshot.avg_volume`). The tick
runs once per decision candle, so the fraction is a share of one candle's volume.

What is capped, and what is not:

* entries and adds on the side held are capped to ``|held| + room``;
* a flip closes what is held (a reduction, never capped) and opens at most ``room - |held|`` on
  the new side in the same tick (nothing when the close alone uses the room: the next ticks
  open it), so the tick's traded quantity stays within the room unless a reduction needs more;
* reductions are never capped. Every reduction this bot makes lowers risk: closes, cuts to the
  leverage, notional, gross and liquidation caps, the loss budget, a stop that must be
  placeable, the halt; and the policy's own de-lever answers higher volatility or funding
  cost. Holding more than wanted for several ticks to save impact keeps exactly the risk the
  reduction is for; the impact of a reduction is paid (the report's ``slippage_paid`` shows it).

Unknown volume (no volume in the data or from the venue, or none over the whole window) with the
cap on is neither "no limit" nor a block on de-risking: the contract takes no increase (its
decision says so) and its reductions go through, as for a contract with stale data.
"""

from __future__ import annotations

from decimal import Decimal

from bot.domain.instrument import Instrument
from bot.policy.inputs import ContractView

ZERO = Decimal(0)


def participation_room(inst: Instrument, fraction: Decimal, avg_volume: Decimal) -> Decimal:
    """The most one tick may add to a position (base units, rounded down to the step)."""
    return inst.floor_qty(fraction * avg_volume)


def within_participation(
    v: ContractView, qty: Decimal, fraction: Decimal
) -> tuple[Decimal, str | None, bool]:
    """The target quantity (unsigned, on ``v.direction``'s side) after the participation cap,
    the note for the reason (``None``: not cut), and whether an increase is being worked (a
    step was cut from a larger one and still adds: the planner trades it below the rebalance
    tolerance)."""
    position = v.position
    held = position.qty if position is not None else ZERO
    same_side = held * v.direction > 0
    start = abs(held) if same_side else ZERO  # what the target grows from
    if qty <= start:
        return qty, None, False  # a reduction (or no change): never capped
    avg = v.market.avg_volume
    inst = v.instrument
    if avg is None:
        return start, f"max participation {fraction}: volume unknown -> no increase, qty ", False
    room = participation_room(inst, fraction, avg)
    if same_side:
        allowed = start + room  # (not floored again: a position off the step grid would shrink)
    else:
        # A flip's close is traded in the same tick: the opening gets what the close leaves.
        left = room - abs(held)
        allowed = inst.floor_qty(left) if left > 0 else ZERO
    if qty <= allowed:
        return qty, None, False
    note = f"max participation {fraction} x avg volume {avg}/candle = {room} per tick -> qty "
    return allowed, note, allowed > start
