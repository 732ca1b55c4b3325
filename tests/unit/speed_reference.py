"""The hot-path functions as they were at bdbcc2b, before the speed work: the oracle of
``test_speed_equivalence.py``.

The policy, risk and domain steps were made cheaper (fewer Python calls, no
``dataclasses.replace``, comparisons instead of ``min``/``max``) with the promise that every
output stays byte-identical, Decimal exponents included (``repr`` of the results). These copies
pin that promise: the tests compare the live functions with them over generated inputs. They are
not a second implementation of anything the bot runs; only the tests import them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.config.policy import Policy
from bot.domain.decision import Decision
from bot.domain.enums import MarginMode, TradingState
from bot.domain.instrument import Bracket, Instrument, MarginModel
from bot.policy.inputs import ContractView
from bot.policy.leverage import HALF, funding_cap, q2, smooth
from bot.policy.protection import daily_vol_unit, describe, distance
from bot.ports.store import RiskMemory
from bot.risk.limits import RiskLimits

ZERO = Decimal(0)
ONE = Decimal(1)
LEVERAGE_STEP = Decimal("0.01")
LEV = Decimal("0.0001")
CUT = Decimal("0.8")
MAX_CUTS = 60

# ---------------------------------------------------------------------------- instrument


def bracket_for(inst: Instrument, notional: Decimal) -> Bracket:
    n = abs(notional)
    for bracket in inst.brackets:
        if bracket.contains(n):
            return bracket
    return inst.brackets[-1]


def max_leverage_for(inst: Instrument, notional: Decimal) -> Decimal:
    return bracket_for(inst, notional).max_leverage


def floor_price(inst: Instrument, price: Decimal) -> Decimal:
    return (price / inst.tick_size).to_integral_value(rounding=ROUND_FLOOR) * inst.tick_size


def ceil_price(inst: Instrument, price: Decimal) -> Decimal:
    return (price / inst.tick_size).to_integral_value(rounding=ROUND_CEILING) * inst.tick_size


def stop_price(inst: Instrument, price: Decimal, position_sign: int) -> Decimal:
    return ceil_price(inst, price) if position_sign > 0 else floor_price(inst, price)


def take_profit_price(inst: Instrument, price: Decimal, position_sign: int) -> Decimal:
    return floor_price(inst, price) if position_sign > 0 else ceil_price(inst, price)


# -------------------------------------------------------------------------------- margin


def maintenance_margin(inst: Instrument, notional: Decimal) -> Decimal:
    bracket = bracket_for(inst, notional)
    return abs(notional) * bracket.maint_margin_rate - bracket.maint_amount


def max_leverage_with_liquidation_beyond(
    inst: Instrument, side: int, entry_price: Decimal, notional: Decimal, limit_price: Decimal
) -> Decimal:
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (long) or -1 (short), got {side!r}")
    if entry_price <= ZERO:
        raise ValueError(f"{inst.symbol}: entry_price must be > 0, got {entry_price}")
    if limit_price <= ZERO:
        raise ValueError(f"{inst.symbol}: limit_price must be > 0, got {limit_price}")
    if notional <= ZERO:
        raise ValueError(
            f"max_leverage_with_liquidation_beyond({inst.symbol}): notional must be > 0, "
            f"got {notional}"
        )
    q = notional / entry_price
    margin_min = side * q * (entry_price - limit_price) + maintenance_margin(inst, q * limit_price)
    cap = max_leverage_for(inst, notional)
    leverage = cap if margin_min <= ZERO else min(notional / margin_min, cap)
    leverage = leverage.quantize(LEVERAGE_STEP, rounding=ROUND_FLOOR)
    return leverage if leverage >= ONE else ZERO


def solve(
    inst: Instrument, side: int, q: Decimal, entry: Decimal, balance: Decimal
) -> Decimal | None:
    brackets = inst.brackets
    first = brackets[0]
    surplus_at_zero = balance - side * q * entry + first.maint_amount
    if side > 0 and surplus_at_zero >= ZERO:
        return None
    if side < 0 and surplus_at_zero <= ZERO:
        raise ValueError(
            f"{inst.symbol}: margin balance {balance} is below maintenance at every price "
            f"for a short of {q} at {entry}: the account is already liquidatable"
        )
    best: tuple[Decimal, Decimal] | None = None
    for index, bracket in enumerate(brackets):
        denominator = q * bracket.maint_margin_rate - side * q
        if denominator == ZERO:
            continue
        price = (balance + bracket.maint_amount - side * q * entry) / denominator
        if price <= ZERO:
            continue
        violation = _range_violation(q * price, bracket, index == len(brackets) - 1)
        if violation == ZERO:
            return price
        if best is None or violation < best[0]:
            best = (violation, price)
    return None if best is None else best[1]


def _range_violation(notional: Decimal, bracket: Bracket, is_last: bool) -> Decimal:
    if notional < bracket.notional_floor:
        return bracket.notional_floor - notional
    if not is_last and notional > bracket.notional_cap:
        return notional - bracket.notional_cap
    return ZERO


# ------------------------------------------------------------------------ stop placement


def stop_range(
    inst: Instrument, sign: int, mark: Decimal, liquidation: Decimal | None, buffer: Decimal
) -> tuple[Decimal, Decimal]:
    """(nearest, farthest) of the old StopRange."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    if mark <= ZERO:
        return ZERO, inst.tick_size * sign
    buffer = max(buffer, ZERO)
    if sign > 0:
        tick = inst.tick_size
        nearest = ceil_price(inst, mark) - tick
        if inst.max_price is not None:
            nearest = min(nearest, floor_price(inst, inst.max_price))
        bounds = [tick]
        if liquidation is not None:
            bounds.append(liquidation + buffer)
        if inst.min_price is not None:
            bounds.append(inst.min_price)
        if inst.percent_down is not None:
            bounds.append(mark * inst.percent_down)
        farthest = ceil_price(inst, max(bounds))
        if liquidation is not None and farthest <= liquidation:
            farthest = floor_price(inst, liquidation) + tick
        return nearest, farthest
    tick = inst.tick_size
    nearest = floor_price(inst, mark) + tick
    if inst.min_price is not None:
        nearest = max(nearest, ceil_price(inst, inst.min_price))
    caps: list[Decimal] = []
    if liquidation is not None:
        caps.append(liquidation - buffer)
    if inst.max_price is not None:
        caps.append(inst.max_price)
    if inst.percent_up is not None:
        caps.append(mark * inst.percent_up)
    if not caps:
        return nearest, Decimal("Infinity")
    farthest = floor_price(inst, min(caps))
    if liquidation is not None and farthest >= liquidation:
        farthest = ceil_price(inst, liquidation) - tick
    return nearest, farthest


def placeable_stop(
    inst: Instrument,
    sign: int,
    mark: Decimal,
    wanted: Decimal | None,
    liquidation: Decimal | None,
    buffer: Decimal,
) -> Decimal | None:
    nearest, farthest = stop_range(inst, sign, mark, liquidation, buffer)
    empty = (nearest < farthest) if sign > 0 else (nearest > farthest)
    if empty:
        return None
    if wanted is None:
        return farthest if farthest.is_finite() else None
    stop = stop_price(inst, wanted, sign)
    if sign > 0:
        return min(max(stop, farthest), nearest)
    return max(min(stop, farthest), nearest)


def fit_size(
    inst: Instrument,
    qty: Decimal,
    sign: int,
    mark: Decimal,
    wanted: Decimal | None,
    buffer: Decimal,
    liquidation_of: Callable[[Decimal], Decimal | None],
) -> tuple[Decimal, Decimal | None, bool]:
    size = inst.floor_qty(abs(qty))
    cut = False
    for _ in range(MAX_CUTS):
        if size <= ZERO or size < inst.min_qty:
            break
        stop = placeable_stop(inst, sign, mark, wanted, liquidation_of(size), buffer)
        if stop is not None:
            return size, stop, cut
        cut = True
        smaller = inst.floor_qty(size * CUT)
        size = smaller if smaller < size else size - inst.step_size
    return ZERO, None, True


# --------------------------------------------------------------------- loss budget, guard


def loss_at_stop(
    qty: Decimal, mark: Decimal, stop: Decimal, slippage: Decimal, inst: Instrument
) -> Decimal:
    if qty == 0:
        return ZERO
    move = (mark - stop) if qty > 0 else (stop - mark)
    return abs(qty) * (max(move, ZERO) + inst.tick_size + stop * (slippage + inst.taker_fee))


def cap_to_loss_budget(
    decisions: Sequence[Decision],
    marks: Mapping[str, Decimal],
    instruments: Mapping[str, Instrument],
    budget: Decimal | None,
    slippage: Decimal,
    fixed_loss: Decimal = ZERO,
) -> list[Decision]:
    if budget is None:
        return list(decisions)
    if slippage < 0:
        raise ValueError(f"cap_to_loss_budget: slippage must be >= 0, got {slippage}")
    losses = {
        d.symbol: loss_at_stop(
            d.target_qty, marks[d.symbol], d.stop_loss, slippage, instruments[d.symbol]
        )
        for d in decisions
        if d.target_qty != 0 and d.stop_loss is not None
    }
    total = sum(losses.values(), ZERO)
    room = max(budget - fixed_loss, ZERO)
    if total <= room or total == 0:
        return list(decisions)
    factor = room / total
    out = []
    for d in decisions:
        if d.symbol not in losses:
            out.append(d)
            continue
        inst = instruments[d.symbol]
        qty = inst.floor_qty(abs(d.target_qty) * factor)
        # Since the minimum-order fix: a size below the venue's minimum order is none.
        below = f" ({qty} is below the exchange's minimum order {inst.min_qty})"
        below = below if 0 < qty < inst.min_qty else ""
        qty = qty if qty >= inst.min_qty else ZERO
        signed = qty if d.target_qty > 0 or qty == 0 else -qty  # never -0 (simulation audit)
        why = (
            f"loss budget: if every stop fires the account loses {total:.2f} "
            f"(slippage {slippage * 10000:.0f} bps and fees included) > {room:.2f} left "
            f"before the daily-loss/drawdown limit: size cut to {signed}{below}"
        )
        out.append(
            replace(
                d,
                target_qty=signed,
                target_leverage=(d.target_leverage * factor).quantize(LEV, ROUND_FLOOR),
                direction=d.direction if qty != 0 else 0,
                stop_loss=d.stop_loss if qty != 0 else None,
                take_profit=d.take_profit if qty != 0 else None,
                reason=f"{d.reason}; {why}",
            )
        )
    return out


def equity_floor(memory: RiskMemory | None, limits: RiskLimits) -> Decimal | None:
    if memory is None or memory.state is TradingState.HALTED:
        return None
    drawdown = memory.peak_equity * (ONE - limits.max_drawdown)
    if (
        memory.state is TradingState.REDUCING
        and limits.on_daily_loss == "reducing"
        and memory.state_reason.startswith("daily loss ")
    ):
        return drawdown
    return max(drawdown, memory.day_start_equity * (ONE - limits.daily_loss))


def vol_target_leverage(volatility: Decimal, target: Decimal, lo: Decimal, hi: Decimal) -> Decimal:
    raw = hi if volatility <= 0 else target / volatility
    return min(max(raw, lo), hi)


# ---------------------------------------------------------------------------- the policy


def liquidation_cap(
    inst: Instrument,
    direction: int,
    price: Decimal,
    notional: Decimal,
    stop_distance: Decimal,
    buffer: Decimal,
) -> Decimal:
    if price <= 0:
        return ZERO
    limit_price = price - direction * (stop_distance + buffer)
    if limit_price <= 0:
        return ZERO
    best = max_leverage_with_liquidation_beyond(inst, direction, price, notional, limit_price)
    setting = best.to_integral_value(rounding=ROUND_FLOOR)
    if setting >= 2:
        return setting - 1
    return HALF if setting == 1 else ZERO


def decide_one(v: ContractView, policy: Policy, base: Decimal, why: str) -> Decision:
    short = v.symbol.split("/")[0]
    price = v.market.mark_price
    if v.direction == 0:
        return Decision(
            symbol=v.symbol,
            direction=0,
            target_leverage=ZERO,
            target_qty=ZERO,
            stop_loss=None,
            take_profit=None,
            reason=f"{short}: direction flat -> close",
            allow_increase=v.allow_increase,
        )
    parts = [f"{short}: {why}"]
    current = v.current_leverage
    lev, note = smooth(current, base, policy.leverage.hysteresis, policy.leverage.max_step)
    if note:
        parts.append(note if note.startswith("within") else f"-> {q2(lev)} {note}")
    lev, note = funding_cap(
        lev, v.direction, v.market.funding.annualized, policy.funding.max_annual_cost
    )
    if note:
        parts.append(note)
    sl_dist = distance(policy.stop_loss.kind, policy.stop_loss.distance, v.market, price)
    buffer = policy.liquidation.buffer_vol_units * daily_vol_unit(v.market, price)
    notional = lev * v.sleeve_equity
    liq_cap = (
        liquidation_cap(v.instrument, v.direction, price, notional, sl_dist, buffer)
        if notional > 0
        else ZERO
    )
    if lev > liq_cap:
        parts.append(
            f"liquidation buffer {policy.liquidation.buffer_vol_units} vol beyond SL "
            f"-> leverage {q2(liq_cap)}"
        )
        lev = liq_cap
    hard = min(v.max_leverage, max_leverage_for(v.instrument, notional))
    if lev > hard:
        parts.append(f"cap {q2(hard)}")
        lev = hard
    lev = q2(max(lev, ZERO))
    qty = v.instrument.floor_qty(lev * v.sleeve_equity / price) if price > 0 else ZERO
    held = v.position.qty if v.position is not None else ZERO
    # Since the held-setting fix: an increase stays within the notional the isolated setting
    # held is allowed at (Binance refuses to lower it on an open position).
    pos = v.position
    if (
        qty > 0
        and pos is not None
        and held * v.direction > 0
        and pos.margin_mode is MarginMode.ISOLATED
        and v.instrument.margin_model is not MarginModel.BYBIT_UTA
        and int(pos.leverage) > 1
    ):
        setting = int(pos.leverage)
        limit = next(
            (b.notional_floor for b in v.instrument.brackets if b.max_leverage < setting), None
        )
        most = limit * Decimal("0.999") if limit is not None else None
        at = max(v.market.mark_price, v.market.last_price)
        if most is not None and qty > abs(held) and qty * at > most:
            qty = max(v.instrument.floor_qty(most / at), abs(held))
            lev = q2(qty * price / v.sleeve_equity)
            parts.append(
                f"isolated setting {setting} held: above the bracket maximum from notional "
                f"{limit}, and the exchange does not lower it on an open position -> qty {qty}"
            )
    # Since the policy no-increase fix: the policy's allow_increase binds the target too.
    if not (v.allow_increase and policy.allow_increase) and (
        held * v.direction <= 0 or qty > abs(held)
    ):
        qty = min(qty, abs(held)) if held * v.direction > 0 else ZERO
        parts.append(
            "no increase allowed" if policy.allow_increase else "no increase allowed (policy)"
        )
    above_cap = False
    if held * v.direction > 0:
        caps = [(v.max_leverage * v.sleeve_equity, f"leverage cap {v.max_leverage}")]
        if v.max_notional is not None:
            caps.append((v.max_notional, f"notional cap {v.max_notional}"))
        venue = v.instrument.max_position_notional
        if venue is not None:
            caps.append((venue, f"the exchange's largest position {venue}"))
        most, which = min(caps, key=lambda c: c[0])  # the first of equals
        if abs(held) * max(v.market.mark_price, v.market.last_price) > most:
            above_cap = True
            parts.append(f"held {abs(held)} above the {which}: cut within the tolerance too")
    target_qty = qty * v.direction if qty != 0 else ZERO  # never -0 (simulation audit)
    stop, take = _protective_prices(v, policy, price, sl_dist, target_qty, parts)
    parts.append(f"SL {describe(policy.stop_loss.kind, policy.stop_loss.distance)}")
    return Decision(
        symbol=v.symbol,
        direction=v.direction,
        target_leverage=lev,
        target_qty=target_qty,
        stop_loss=stop,
        take_profit=take,
        reason="; ".join(parts),
        allow_increase=v.allow_increase and policy.allow_increase,
        above_cap=above_cap,
    )


def _protective_prices(
    v: ContractView,
    policy: Policy,
    price: Decimal,
    sl_dist: Decimal,
    target_qty: Decimal,
    parts: list[str],
) -> tuple[Decimal | None, Decimal | None]:
    if target_qty == 0:
        return None, None
    sign = 1 if target_qty > 0 else -1
    inst = v.instrument
    stop = stop_price(inst, price - sign * sl_dist, sign)
    same_side = v.position is not None and v.position.sign == sign
    # Since the crossed-stop fix: a resting stop the mark has crossed is no trailing anchor.
    if same_side and v.resting_stop is not None and (v.resting_stop - price) * sign < 0:
        stop = max(stop, v.resting_stop) if sign > 0 else min(stop, v.resting_stop)
    take: Decimal | None = None
    tp = policy.take_profit
    if tp is not None:
        entry = v.position.entry_price if same_side and v.position is not None else price
        take = _beyond(v, entry, sign, distance(tp.kind, tp.distance, v.market, entry), parts)
        if (take - price) * sign <= 0:
            take = _beyond(v, price, sign, distance(tp.kind, tp.distance, v.market, price), parts)
        if (take - price) * sign <= 0:  # one tick beyond the price (simulation audit)
            tick = inst.tick_size
            take = floor_price(inst, price) + tick if sign > 0 else ceil_price(inst, price) - tick
        if sign > 0 and inst.max_price is not None and take > inst.max_price:
            take = floor_price(inst, inst.max_price)  # within the price filter (audit)
        elif sign < 0 and inst.min_price is not None and take < inst.min_price:
            take = ceil_price(inst, inst.min_price)
        if take <= 0 or (take - price) * sign <= 0:
            take = None
    return stop, take


def _beyond(
    v: ContractView, anchor: Decimal, sign: int, dist: Decimal, parts: list[str]
) -> Decimal:
    # Since the round-trip fix: a take-profit is never inside the taker fee in and out plus the
    # exit's expected slippage; one that would be is placed at it, rounded away from the anchor.
    inst = v.instrument
    round_trip = 2 * inst.taker_fee + v.exit_slippage
    take = take_profit_price(inst, anchor + sign * dist, sign)
    if (take - anchor) * sign >= anchor * round_trip:
        return take
    parts.append(
        f"take-profit {dist / anchor * 100:.3f} % away is inside the round trip of fees "
        f"and exit slippage: at {round_trip * 100:.3f} %"
    )
    at = anchor + sign * (anchor * round_trip)
    return ceil_price(inst, at) if sign > 0 else floor_price(inst, at)
