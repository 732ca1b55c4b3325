"""Leverage steps: volatility target, hysteresis and maximum step, and the safety caps."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument, MarginModel
from bot.domain.margin import max_leverage_with_liquidation_beyond
from bot.domain.market import MarketSnapshot
from bot.domain.position import Position

ZERO = Decimal(0)
CENT = Decimal("0.01")
HALF = Decimal("0.5")
# A target cut to a hard cap is sized this fraction inside it: the gate measures at the moment of
# the order, on the equity left after the tick's earlier orders paid their fees and slippage.
HARD_CAP_ROOM = Decimal("0.999")


def q2(x: Decimal) -> Decimal:
    """Round a leverage down to 0.01 (never more leverage than computed)."""
    return x.quantize(CENT, rounding=ROUND_FLOOR)


def leverage_setting(target: Decimal) -> int:
    """The exchange's whole-number leverage setting for a target leverage: one above its ceiling,
    or 1 for a target of at most 0.5 (a policy whose ``leverage.min`` is below 1).

    The setting decides how much margin an isolated position locks (notional / setting). One step
    of headroom keeps the locked margin below the contract's share of equity, so fees, slippage
    and the unrealised loss of other positions do not make the order fail for margin. A target
    of at most 0.5 at setting 1 locks at most half its share, the same headroom as 1x at setting
    2, and keeps its liquidation as far away as isolated margin allows (a long at setting 1
    cannot be liquidated): setting 2 would put it near half the price, and the liquidation cap
    would then cut a small position to zero in exactly the volatile markets it is sized for.
    """
    if target <= HALF:
        return 1
    return int(target.to_integral_value(rounding=ROUND_CEILING)) + 1


def setting_floor(instrument: Instrument, held: Position | None, sign: int) -> int:
    """The lowest leverage setting an increase of a position on the side ``sign`` can use.

    Binance refuses to lower the leverage of an open isolated position (-4161 "Leverage
    reduction is not supported in Isolated Margin Mode with open positions"; raising it works):
    an increase is planned at the setting held, or a higher one, never asked to lower it (every
    tick would be refused, and the increase with it). Bybit re-sizes the margin instead.
    https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code"""
    if (
        held is None
        or not held.is_open
        or held.sign != sign
        or held.margin_mode is not MarginMode.ISOLATED
        or instrument.margin_model is MarginModel.BYBIT_UTA
    ):
        return 1
    return max(1, int(held.leverage))


def within_held_setting(
    instrument: Instrument,
    held: Position | None,
    market: MarketSnapshot,
    qty: Decimal,
    sign: int,
) -> tuple[Decimal, str | None]:
    """The largest quantity up to ``qty`` (absolute, on the side ``sign``) that the setting held
    (:func:`setting_floor`) may carry, and why it was cut (``None``: it was not).

    An increase is planned at the setting held or a higher one; one whose notional reaches a
    leverage bracket whose maximum is below that setting would need it lowered, which Binance
    refuses on an open isolated position (-4161), and the increase with it, every tick (the
    static 100x policy at BTC's 300,000 bracket edge: setting 101 held, 100 the most beyond).
    The increase stops inside the notional the setting held is allowed at, measured as the
    venue's caps are (:func:`bot.policy.decide.within_hard_caps`: at the higher of the last and
    the mark price, ``HARD_CAP_ROOM`` inside); never below what is held (a position the price
    carried beyond it is not cut for it). Bybit lowers the setting and re-sizes the margin, and
    cross margin keeps no setting for an increase (floor 1): nothing is cut there."""
    floor = setting_floor(instrument, held, sign)
    if floor <= 1 or held is None:
        return qty, None
    limit = instrument.notional_limit_for(Decimal(floor))
    have = abs(held.qty)
    if limit is None or qty <= have:
        return qty, None
    mark, last = market.mark_price, market.last_price
    ref = last if last > mark else mark
    most = limit * HARD_CAP_ROOM
    if qty * ref <= most:
        return qty, None
    capped = instrument.floor_qty(most / ref) if ref > 0 else ZERO
    if capped < have:
        capped = have
    return capped, (
        f"isolated setting {floor} held: above the bracket maximum from notional {limit}, and "
        f"the exchange does not lower it on an open position -> qty {capped}"
    )


def vol_target_leverage(volatility: Decimal, target: Decimal, lo: Decimal, hi: Decimal) -> Decimal:
    """``target / volatility`` clamped to [lo, hi]; ``hi`` when volatility is 0."""
    raw = hi if volatility <= 0 else target / volatility
    # min(max(raw, lo), hi) as comparisons: the same element as the builtins (first of equals).
    if lo > raw:
        raw = lo
    return hi if hi < raw else raw


def smooth(
    current: Decimal, proposed: Decimal, hysteresis: Decimal, max_step: Decimal | None
) -> tuple[Decimal, str]:
    """Apply the hysteresis band and the maximum change per decision to ``proposed``.

    A position being opened (``current`` == 0) goes straight to ``proposed``; the band and the
    step govern changes of a held position, so the policy does not churn.
    """
    if current <= 0:
        return proposed, ""
    if abs(proposed - current) < hysteresis * current:
        return current, f"within hysteresis {hysteresis} -> keep {q2(current)}"
    if max_step is not None and abs(proposed - current) > max_step:
        stepped = current + max_step if proposed > current else current - max_step
        return stepped, f"(max step {max_step})"
    return proposed, ""


def funding_cap(
    leverage: Decimal, direction: int, annual_rate: Decimal, max_annual_cost: Decimal
) -> tuple[Decimal, str]:
    """Cap leverage so the expected funding cost per year stays within ``max_annual_cost``.

    ``annual_rate`` > 0 means longs pay. The cost, as a fraction of the sleeve's equity per year,
    is leverage x direction x annual_rate; receiving funding is never capped.
    """
    cost_per_unit = annual_rate * direction
    if cost_per_unit <= 0 or leverage * cost_per_unit <= max_annual_cost:
        return leverage, ""
    capped = max_annual_cost / cost_per_unit
    return capped, (
        f"funding {cost_per_unit:.3f}/yr x {q2(leverage)} > limit {max_annual_cost} "
        f"-> leverage {q2(capped)}"
    )


def liquidation_cap(
    instrument: Instrument,
    direction: int,
    price: Decimal,
    notional: Decimal,
    stop_distance: Decimal,
    buffer: Decimal,
) -> Decimal:
    """Largest target leverage whose exchange setting (:func:`leverage_setting`) puts the
    liquidation price at least ``buffer`` beyond a stop ``stop_distance`` away from ``price``
    (both in price units). 0 if none does.

    When the stop distance plus the buffer reaches the whole price (a long's stop would sit at
    or below zero), no stop can rest before liquidation at any leverage: 0, never the venue's
    maximum. That is the most volatile moment, when protection matters most.
    """
    if price <= 0:
        return ZERO
    limit_price = price - direction * (stop_distance + buffer)
    if limit_price <= 0:
        return ZERO
    best = max_leverage_with_liquidation_beyond(instrument, direction, price, notional, limit_price)
    setting = best.to_integral_value(rounding=ROUND_FLOOR)
    if setting >= 2:
        return setting - 1  # targets up to setting - 1 get a setting of at most ``setting``
    # Only setting 1 keeps the liquidation beyond the limit: the targets it serves (<= 0.5).
    return HALF if setting == 1 else ZERO
