"""Loss budget in the stops: size positions so that if every resting stop fires, the day's loss
stays within what the daily-loss and drawdown limits have left.

If every stop fires at its trigger, a position of ``q`` loses ``|q| * |mark - stop|`` from now,
plus the expected stop slippage and the taker fee on the stop's notional, plus one tick: the
venue trades on its tick, so a fill lands up to one tick further against the trader than the
price modelled (:meth:`~bot.domain.instrument.Instrument.fill_on_tick`; 10 bps a fill on a
contract quoted to 0.00001 with a tick of 0.01). The remaining budget is
the equity above the guard's floor (:func:`bot.risk.guard.equity_floor`: the higher of the daily
loss floor and the drawdown floor). When the sum over the contracts exceeds the budget, every
target is scaled by the same factor (rounded down to the step; below the venue's minimum order,
to nothing: a held position is closed rather than cut to a sliver no order can carry) and the
decision says so. Losses the bot cannot cut here (positions held without a decision this tick)
are taken off the budget first.

A stop that fills beyond its trigger by more than the expected slippage (a gap, a crash candle)
can still take the day past the limit, by that excess only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from bot.domain.decision import Decision
from bot.domain.enums import TradingState
from bot.domain.instrument import Instrument
from bot.ports.store import RiskMemory

ZERO = Decimal(0)
ONE = Decimal(1)


def loss_at_stop(
    qty: Decimal, mark: Decimal, stop: Decimal, slippage: Decimal, inst: Instrument
) -> Decimal:
    """What a position of ``qty`` loses from ``mark`` if its stop at ``stop`` fires: the move to
    the trigger, ``slippage`` and the contract's taker fee (fractions) on the stop's notional,
    and one tick (the fill is on the tick, rounded against the trader)."""
    if qty == 0:
        return ZERO
    move = (mark - stop) if qty > 0 else (stop - mark)
    if move < ZERO:  # max(move, 0), as a comparison
        move = ZERO
    return abs(qty) * (move + inst.tick_size + stop * (slippage + inst.taker_fee))


def cap_to_loss_budget(
    decisions: Sequence[Decision],
    marks: Mapping[str, Decimal],
    instruments: Mapping[str, Instrument],
    budget: Decimal | None,
    slippage: Decimal,
    fixed_loss: Decimal = ZERO,
) -> list[Decision]:
    """The decisions with their sizes cut so the loss at their stops fits ``budget`` (quote
    currency; ``None``: no limit). ``fixed_loss`` is the loss at stops that cannot be cut."""
    if budget is None:
        return list(decisions)
    if slippage < 0:
        raise ValueError(f"cap_to_loss_budget: slippage must be >= 0, got {slippage}")
    losses: dict[str, Decimal] = {}
    total = ZERO
    for d in decisions:
        stop = d.stop_loss
        if d.target_qty != 0 and stop is not None:
            loss = loss_at_stop(
                d.target_qty, marks[d.symbol], stop, slippage, instruments[d.symbol]
            )
            losses[d.symbol] = loss
    # sum() over the dict's values from ZERO: a symbol decided twice counts once, as before.
    for loss in losses.values():
        total += loss
    room = budget - fixed_loss
    if room < ZERO:  # max(budget - fixed_loss, 0), as a comparison
        room = ZERO
    if total <= room or total == 0:
        return list(decisions)
    factor = room / total
    # The part of the reason that is the same for every contract, formatted once.
    prefix = (
        f"loss budget: if every stop fires the account loses {total:.2f} "
        f"(slippage {slippage * 10000:.0f} bps and fees included) > {room:.2f} left "
        f"before the daily-loss/drawdown limit: size cut to "
    )
    out = []
    for d in decisions:
        if d.symbol not in losses:
            out.append(d)
            continue
        inst = instruments[d.symbol]
        cut = inst.floor_qty(abs(d.target_qty) * factor)
        # Below the venue's minimum order the size is none: no order opens it, and a position
        # held is closed rather than cut to a sliver no order could close or protect.
        qty = cut if cut >= inst.min_qty else ZERO
        out.append(d.resized(qty, factor, prefix, _below_minimum(cut, qty, inst)))
    return out


def _below_minimum(cut: Decimal, qty: Decimal, inst: Instrument) -> str:
    """What the reason adds when a cut size below the venue's minimum order became none."""
    if qty == cut:
        return ""
    return f" ({cut} is below the exchange's minimum order {inst.min_qty})"


# The reason of the ``reducing`` state an exhausted budget moves the account to (see
# :func:`no_room_to_open`); :func:`budget_exhausted` recognises it by this prefix.
BUDGET_EXHAUSTED = "loss budget exhausted"


def budget_exhausted(memory: RiskMemory) -> bool:
    """The account is in the ``reducing`` state an exhausted loss budget moved it to (the
    engine leaves it when room comes back; ``bot resume`` and the simulation's modelled
    operator reset the floor that binds)."""
    return memory.state is TradingState.REDUCING and memory.state_reason.startswith(
        BUDGET_EXHAUSTED
    )


def no_room_to_open(
    wanted: Sequence[Decision], capped: Sequence[Decision], flat: bool
) -> bool | None:
    """Whether the loss budget leaves no room for any position the policy wants.

    ``wanted`` are the decisions before :func:`cap_to_loss_budget`, ``capped`` the same after
    it; ``flat``: the account holds none of its contracts. True when the account is flat, the
    policy wants at least one position (a size and a stop) and the budget cut every one of them
    to nothing: within a hair of a loss limit the account would otherwise sit idle, its state
    ``active``, no alert saying why (a limit that is never quite reached never halts).

    False only when there is ample room again: every position wanted keeps at least half its
    size. In between (some fit, cut to a sliver) says nothing either way, and so does a tick
    with a position held (the account is not idle; its equity still moves) or none wanted.
    The gap keeps the state from flapping: an account 0.005 % above its floor could still open
    the odd minimum order on a tight stop, then sat idle again, each turn two critical alerts
    (found on the conservative policy's walk-forward run).
    """
    if not flat:
        return None
    asked = some = False
    ample = True
    for want, got in zip(wanted, capped, strict=True):
        if want.target_qty == 0 or want.stop_loss is None or not want.allow_increase:
            continue  # (one the gate or a cooldown holds back is not the budget's doing)
        asked = True
        if got.target_qty != 0:
            some = True
        if abs(got.target_qty) * 2 < abs(want.target_qty):
            ample = False
    if not asked:
        return None
    if ample:
        return False
    return None if some else True
