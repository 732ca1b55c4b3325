"""The engine's side of the protection invariant: liquidation prices of the positions it holds or
plans, stops secured by the risk layer (:mod:`bot.risk.stop_placement`), and the check that a
position really has a valid resting stop.

Liquidation prices: the exchange's reported price for a position held as it is (or reduced: an
isolated position's margin shrinks in proportion, so its liquidation price stays); for a
position that grows or opens, the venue's formula (:mod:`bot.domain.margin`: Binance's or
Bybit's, by the contract's margin model) on the blended entry, with the isolated margin the
exchange setting locks (``notional / setting``) or, in cross mode, the wallet with every other
position's maintenance margin and unrealised PnL at their marks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

from bot.domain.decision import Decision
from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.margin import (
    cross_maintenance,
    liquidation_price_cross_any_wallet,
    liquidation_price_isolated,
)
from bot.domain.orders import Order
from bot.domain.position import Position
from bot.engine.account import AccountView
from bot.engine.planner import exchange_setting, stop_sizing
from bot.policy.leverage import q2, setting_floor
from bot.risk.coverage import (
    Coverage,
    closing_side,
    coverage,
    holds_close_position_slot,
    is_stop,
    own_trigger_changed,
    plain,
    resting_stops,
)
from bot.risk.stop_placement import fit_size, is_valid_stop, placeable_stop

ZERO = Decimal(0)
ONE = Decimal(1)
_ISOLATED = MarginMode.ISOLATED  # bound once: a member looked up on its enum class is slow


def liquidation_of_held(
    inst: Instrument, pos: Position, acct: AccountView, instruments: Mapping[str, Instrument]
) -> Decimal | None:
    """The liquidation price of a held position: the venue's, else computed from its margin."""
    if pos.liquidation_price is not None:
        return pos.liquidation_price
    try:
        if pos.margin_mode is _ISOLATED:
            return liquidation_price_isolated(inst, pos.qty, pos.entry_price, pos.isolated_margin)
        mm, upnl = _others(acct, pos.symbol, instruments)
        return liquidation_price_cross_any_wallet(
            inst, pos.qty, pos.entry_price, acct.wallet, mm, upnl
        )
    except ValueError:
        return acct.marks.get(pos.symbol)  # already liquidatable: no stop can rest before it


def liquidation_after(
    inst: Instrument,
    acct: AccountView,
    instruments: Mapping[str, Instrument],
    *,
    sign: int,
    qty: Decimal,
    mark: Decimal,
    setting: Decimal,
    margin_mode: MarginMode,
    entry_slippage: Decimal = ZERO,
) -> Decimal | None:
    """Liquidation price of the position ``sign * qty`` (absolute ``qty``) once traded at
    ``mark`` from what ``acct`` holds, with the exchange leverage ``setting`` for new margin.
    The new part fills ``entry_slippage`` (fraction) beyond the mark, against the position (a
    long buys higher, a short sells lower: the liquidation price comes nearer), on the tick
    against it as the venue fills (a tick can be more than the slippage where it is a large
    fraction of the price) and, in cross mode, its taker fee leaves the wallet; the result is
    on the tick grid toward the mark, as the venue reports a held position's: the stop
    planned now is still placeable once the position is held.
    On error (the account would already be liquidatable) the mark itself: no room for a stop."""
    pos = acct.positions.get(inst.symbol)
    held = abs(pos.qty) if pos is not None and pos.is_open and pos.sign == sign else ZERO
    if pos is not None and held > 0 and qty <= held:
        return liquidation_of_held(inst, pos, acct, instruments)
    fill = inst.fill_on_tick(mark * (ONE + sign * entry_slippage), sign) if entry_slippage else mark
    entry = fill
    if held > 0 and pos is not None:
        entry = (held * pos.entry_price + (qty - held) * fill) / qty
    mode = pos.margin_mode if pos is not None and pos.is_open else margin_mode
    try:
        if mode is _ISOLATED:
            margin = qty * entry / (ONE if setting < ONE else setting)  # max(setting, 1)
            liq = liquidation_price_isolated(inst, sign * qty, entry, margin)
        else:
            mm, upnl = _others(acct, inst.symbol, instruments)
            # The cross wallet pays the new part's taker fee: the liquidation comes nearer.
            wallet = acct.wallet - (qty - held) * fill * inst.taker_fee
            liq = liquidation_price_cross_any_wallet(inst, sign * qty, entry, wallet, mm, upnl)
    except ValueError:
        return mark
    if liq is None:
        return None
    # Where the tick is a large fraction of the price (1000PEPE near 1e-6: 10 %), the exact
    # price would promise up to a tick more room than the held position will have.
    return inst.liquidation_on_grid(liq, sign)


def position_after_fills(
    before: Position | None, fills: Sequence[tuple[Decimal, Decimal]]
) -> tuple[Decimal, Decimal]:
    """``(qty, entry)`` of a one-way position after signed fills ``(qty change, price)``, in the
    order they happened, from ``before`` (``None``: flat).

    An add blends the entry, a reduction keeps it, a fill through zero opens the other side at
    its price. The engine's estimate of a position it just traded when the venue's positions
    cannot be read (``Engine._protect_by_fills``)."""
    qty = before.qty if before is not None else ZERO
    entry = before.entry_price if before is not None and before.is_open else ZERO
    for change, price in fills:
        if change == 0:
            continue
        new = qty + change
        if qty == 0 or (qty > 0) == (change > 0):
            entry = (abs(qty) * entry + abs(change) * price) / abs(new)
        elif new == 0:
            entry = ZERO
        elif (new > 0) != (qty > 0):
            entry = price  # through zero: the new side opened at this fill
        qty = new
    return qty, entry


def secure_decision(
    d: Decision,
    acct: AccountView,
    instruments: Mapping[str, Instrument],
    *,
    mark: Decimal,
    buffer: Decimal,
    margin_mode: MarginMode,
    entry_slippage: Decimal = ZERO,
) -> Decision:
    """The decision with a stop the risk layer accepts, its size cut until one exists, and no
    increase on a stop moved nearer the mark than the decision's (:func:`_no_increase`).

    ``buffer`` is the liquidation buffer in price units; ``entry_slippage`` the fraction beyond
    the mark an increase is expected to fill at (see :func:`liquidation_after`). The reason
    says what was changed.
    """
    if d.target_qty == 0 or mark <= 0:
        return d
    inst = instruments[d.symbol]
    sign = 1 if d.target_qty > 0 else -1
    wanted = target = abs(d.target_qty)
    lev_per_qty = d.target_leverage / target
    notes = []
    largest = inst.largest_order
    if largest is not None and target > largest:
        # One stop-market order must be able to protect the position and one market order to
        # close it; the venue refuses either above its largest market order (Binance -4005).
        target = largest
        notes.append(
            f"size {wanted} above the exchange's largest market order -> size cut to {largest}"
        )

    if inst.floor_qty(target) < inst.min_qty:
        # No order can open a position this small (nor close one, or protect it without a
        # close-position stop): the cause is the venue's minimum order, not the stop's room.
        return _no_position(
            d, f"size {plain(target)} below the exchange minimum {plain(inst.min_qty)}"
        )

    # An open isolated position's setting cannot be lowered on Binance: the increase margins at
    # the setting held when it is higher (the liquidation nearer), as the sizing step sends it.
    pos = acct.positions.get(d.symbol)
    floor = setting_floor(inst, pos, sign)
    # What is held on the decided side: no increase beyond it on a stop moved in (fit_size).
    held = abs(pos.qty) if pos is not None and pos.is_open and pos.sign == sign else ZERO

    def liquidation_of(qty: Decimal) -> Decimal | None:
        setting = Decimal(exchange_setting(lev_per_qty * qty, inst, qty * mark, floor))
        return liquidation_after(
            inst,
            acct,
            instruments,
            sign=sign,
            qty=qty,
            mark=mark,
            setting=setting,
            margin_mode=margin_mode,
            entry_slippage=entry_slippage,
        )

    fitted = fit_size(
        inst,
        qty=target,
        sign=sign,
        mark=mark,
        wanted=d.stop_loss,
        buffer=buffer,
        liquidation_of=liquidation_of,
        held=held,
    )
    if fitted.refused is not None:
        refusal = _no_increase(d, fitted.refused, fitted.qty, held, inst)
        if isinstance(refusal, Decision):
            return refusal
        target, note = refusal
        notes.append(note)
    # Decision(...) with every field, not dataclasses.replace: the same object, built cheaper.
    if fitted.qty == 0 or fitted.stop is None:
        return _no_position(
            d,
            f"no stop can rest between mark {mark} and liquidation (buffer {buffer:.6g}) at "
            "any size",
            "close",
        )
    lev = d.target_leverage
    if fitted.qty != wanted:
        lev = q2(lev_per_qty * fitted.qty)
    if fitted.qty != target:
        notes.append(f"no placeable stop at size {target} -> size cut to {fitted.qty}")
    if fitted.stop != d.stop_loss:
        notes.append(f"stop {d.stop_loss} -> {fitted.stop} (valid range before liquidation)")
    if not notes:
        return d
    return Decision(
        symbol=d.symbol,
        direction=d.direction,
        target_leverage=lev,
        target_qty=sign * fitted.qty,
        stop_loss=fitted.stop,
        take_profit=d.take_profit,
        reason=f"{d.reason}; {'; '.join(notes)}",
        allow_increase=d.allow_increase,
        participation_capped=d.participation_capped,
        above_cap=d.above_cap,
    )


def _no_increase(
    d: Decision,
    refused: tuple[Decimal, Decimal],
    qty: Decimal,
    held: Decimal,
    inst: Instrument,
) -> Decision | tuple[Decimal, str]:
    """What :func:`secure_decision` makes of an increase :func:`fit_size` refused (``refused``:
    the size and the stop it would have needed; ``qty`` the size fitted instead): the size the
    fitted one is compared with and the note saying why, or the decision to open nothing.

    At the size wanted the stop lies nearer the mark than the policy's: the loss budget would
    measure the loss there, understated by that move (a leverage setting read as 30 instead
    of 3 put it 40 USDT under a 114,000 mark, a resting stop read ten times over one tick
    under it, and the position grew). No increase on such a stop: the size is cut to where
    the policy's stop rests, or to what is held."""
    size, forced = refused
    why = (
        f"stop {d.stop_loss} -> {forced} at size {size} (valid range before liquidation), "
        "nearer the mark than the policy's stop distance: no increase on it"
    )
    if qty == 0 and held == 0:  # flat (or held on the other side): nothing opens
        return _no_position(d, why)
    if qty > held:
        return qty, f"{why} -> size cut to {qty}, where the policy's stop rests"
    # (cut below what is held only where the held size has no stop at all: said after this)
    kept = inst.floor_qty(held)
    return kept, f"{why} -> size {kept} (held)"


def secure_stop(
    inst: Instrument,
    pos: Position,
    acct: AccountView,
    instruments: Mapping[str, Instrument],
    *,
    wanted: Decimal | None,
    buffer: Decimal,
) -> Decimal | None:
    """A placeable stop for the position as held, or ``None`` when none exists."""
    mark = acct.marks.get(pos.symbol)
    if mark is None or not pos.is_open:
        return None
    return placeable_stop(
        inst,
        sign=pos.sign,
        mark=mark,
        wanted=wanted,
        liquidation=liquidation_of_held(inst, pos, acct, instruments),
        buffer=buffer,
    )


def valid_stops(
    inst: Instrument,
    pos: Position,
    acct: AccountView,
    instruments: Mapping[str, Instrument],
    resting: Sequence[Order],
) -> list[Order]:
    """The resting stops (the bot's, or placed by hand: :func:`bot.risk.coverage.is_stop`)
    whose trigger protects ``pos`` now: strictly between the mark and the liquidation price, on
    the grid (:func:`is_valid_stop`)."""
    mark = acct.marks.get(pos.symbol)
    if mark is None:
        return []
    stops = [o for o in resting if is_stop(o) and o.is_open]
    if not stops:
        return []
    liq = liquidation_of_held(inst, pos, acct, instruments)
    return [
        o
        for o in stops
        if o.trigger_price is not None
        and is_valid_stop(inst, sign=pos.sign, mark=mark, trigger=o.trigger_price, liquidation=liq)
    ]


def still_protects(
    inst: Instrument, pos: Position, acct: AccountView, instruments: Mapping[str, Instrument]
) -> Callable[[Order], bool]:
    """Whether a resting order on the closing side is valid protection for ``pos`` now (its
    trigger strictly between the mark and the liquidation price, on the grid): the planner
    keeps such a close-position stop rather than leave the position without one
    (:func:`bot.engine.planner.plan_protection`). The liquidation price is computed once, on
    the first order asked about."""
    liquidation: list[Decimal | None] = []

    def judge(order: Order) -> bool:
        mark = acct.marks.get(pos.symbol)
        if mark is None or not pos.is_open or order.trigger_price is None:
            return False
        if order.side is not closing_side(pos.qty) or own_trigger_changed(order):
            return False
        if not liquidation:
            liquidation.append(liquidation_of_held(inst, pos, acct, instruments))
        return is_valid_stop(
            inst, sign=pos.sign, mark=mark, trigger=order.trigger_price, liquidation=liquidation[0]
        )

    return judge


def close_position_stops(venue_takes_them: bool, pos: Position, resting: Sequence[Order]) -> bool:
    """Whether ``pos`` can get a close-position stop of the bot's: the venue takes them, and no
    close-position stop placed by hand that does not count holds the venue's one per side
    (:func:`bot.risk.coverage.holds_close_position_slot`; the bot never cancels it)."""
    return venue_takes_them and not holds_close_position_slot(resting, closing_side(pos.qty))


def stop_cover(
    inst: Instrument,
    pos: Position,
    acct: AccountView,
    instruments: Mapping[str, Instrument],
    resting: Sequence[Order],
) -> Coverage:
    """How much of ``pos`` its valid resting stops protect (:mod:`bot.risk.coverage`)."""
    return coverage(pos.qty, resting_stops(valid_stops(inst, pos, acct, instruments, resting)))


def protection_gap(
    inst: Instrument,
    pos: Position,
    acct: AccountView,
    instruments: Mapping[str, Instrument],
    resting: Sequence[Order],
    *,
    close_position_stops: bool = False,
) -> str | None:
    """Why ``pos`` is not protected as well as the venue allows (``None``: valid stops on the
    closing side cover it).

    Covered means: a valid close-position stop, or valid sized stops that add up to the
    position, the bot's or placed by hand on the closing side (as the alerts count them). A
    position no order can carry on a venue without close-position stops is covered when its
    stops cover the part on the step: the remainder is no gap the bot can close (no order can
    trade it either); :func:`stop_cover` names it.
    """
    mark = acct.marks.get(pos.symbol)
    stops = [o for o in resting if is_stop(o) and o.is_open]
    if not stops:
        if stop_sizing(abs(pos.qty), inst, close_position_stops).placeable:
            return "no resting stop-loss"
        return None  # nothing an order can protect: the whole position is the remainder
    size = abs(pos.qty)
    if mark is not None:
        # The usual case first: one valid stop that covers it all on its own.
        liq = liquidation_of_held(inst, pos, acct, instruments)
        for o in stops:
            if (
                (o.close_position or o.amount == size)
                and o.side is closing_side(pos.qty)
                and o.trigger_price is not None
                and is_valid_stop(
                    inst, sign=pos.sign, mark=mark, trigger=o.trigger_price, liquidation=liq
                )
            ):
                return None
    cover = stop_cover(inst, pos, acct, instruments, resting)
    if cover.complete:
        return None
    remainder = stop_sizing(cover.size, inst, close_position_stops).remainder
    if remainder and cover.covered >= cover.size - remainder:
        return None
    liq = liquidation_of_held(inst, pos, acct, instruments)
    first = stops[0]
    amount = plain(first.amount) if first.amount is not None else "close-position"
    trigger = plain(first.trigger_price) if first.trigger_price is not None else "no trigger"
    # shown on the contract's tick, rounded toward the mark (the side that is nearer)
    shown = "unknown"
    if liq is not None:
        shown = plain(inst.liquidation_on_grid(liq, pos.sign))
    return (
        f"stop {first.client_id} ({amount} at {trigger}) does not protect {plain(pos.qty)} at "
        f"mark {plain(mark) if mark is not None else 'unknown'} (liquidation {shown}): "
        f"{cover.describe()}"
    )


def _others(
    acct: AccountView, symbol: str, instruments: Mapping[str, Instrument]
) -> tuple[Decimal, Decimal]:
    """Maintenance margin and unrealised PnL of every other open position at its mark, the
    maintenance as the account's liquidation holds it (:func:`cross_maintenance`: a Bybit
    position also to its value at entry, as the simulated exchange and the alerts take it)."""
    mm = upnl = ZERO
    for sym, p in acct.positions.items():
        if sym == symbol or not p.is_open or sym not in acct.marks or sym not in instruments:
            continue
        mark = acct.marks[sym]
        mm += cross_maintenance(instruments[sym], p.qty, p.entry_price, mark)
        upnl += p.unrealized_pnl(mark)
    return mm, upnl


def _no_position(d: Decision, why: str, outcome: str = "no position") -> Decision:
    """``d`` sized to nothing for ``why`` (its direction kept, as the securing step's other
    answers keep it; the reason says ``why -> outcome``)."""
    # Decision(...) with every field, not dataclasses.replace: the same object, built cheaper.
    return Decision(
        symbol=d.symbol,
        direction=d.direction,
        target_leverage=ZERO,
        target_qty=ZERO,
        stop_loss=None,
        take_profit=None,
        reason=f"{d.reason}; {why} -> {outcome}",
        allow_increase=d.allow_increase,
    )
