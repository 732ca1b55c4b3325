"""Leverage steps: volatility target, hysteresis and maximum step, and the safety caps."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.domain.instrument import Instrument
from bot.domain.margin import max_leverage_with_liquidation_beyond

ZERO = Decimal(0)
CENT = Decimal("0.01")
HALF = Decimal("0.5")


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
