"""The decision: target leverage, position and protective prices for every contract.

Pure: the same inputs always give the same decisions. Steps for each contract, each recorded
in the reason:

1. base leverage: constant (``static``), ``target_vol / vol`` (``vol_target``), or the contract's
   share of a risk-parity book scaled to the target volatility (``risk_parity``; the book as
   held, a short contract's returns negated), clamped to [min, max];
2. hysteresis band and maximum step against the current leverage (no churn);
3. safety caps, never rate-limited: funding cost, liquidation buffer (the stop must trigger at
   least ``buffer_vol_units`` daily-volatility units before the liquidation price), the
   contract's and the account's maximum leverage, the exchange bracket;
4. target quantity = direction x leverage x sleeve equity / price, rounded down to the step,
   then within the hard caps as the risk gate measures them (:func:`within_hard_caps`), then
   an increase within the notional the isolated leverage setting held is allowed at
   (:func:`bot.policy.leverage.within_held_setting`), within the volume participation cap
   (:mod:`bot.policy.participation`), and none where the trading state or the policy
   (``allow_increase = false``) allows none;
5. stop-loss (trailing: it only ever moves toward the price, from a resting stop the mark has not
   crossed) and take-profit from the entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import assert_never

import numpy as np
import numpy.typing as npt

from bot.config.policy import (
    AllocationParams,
    Policy,
    RiskParitySizing,
    StaticSizing,
    VolTargetSizing,
)
from bot.domain.decision import Decision
from bot.policy.allocation import erc_weights, inverse_vol_weights, scale_to_target
from bot.policy.inputs import ContractView
from bot.policy.leverage import (
    HARD_CAP_ROOM,
    funding_cap,
    liquidation_cap,
    q2,
    smooth,
    vol_target_leverage,
    within_held_setting,
)
from bot.policy.participation import within_participation
from bot.policy.protection import HUNDRED, daily_vol_unit, describe, distance, trailing_anchor

ZERO = Decimal(0)


def base_leverages(
    views: Sequence[ContractView], policy: Policy, cov_annual: npt.NDArray[np.float64] | None
) -> dict[str, tuple[Decimal, str]]:
    """Leverage per contract before smoothing and caps, with the first part of the reason."""
    lev = policy.leverage
    out: dict[str, tuple[Decimal, str]] = {}
    sizing = policy.sizing
    match sizing:
        case StaticSizing(fixed=fixed):
            for v in views:
                out[v.symbol] = (fixed, f"static {fixed}x")
            return out
        case VolTargetSizing(target_volatility=target):
            for v in views:
                vol = v.market.volatility
                raw = vol_target_leverage(vol, target, lev.min, lev.max)
                cmp = ">" if vol > target else "<="
                out[v.symbol] = (raw, f"vol {vol:.2f} {cmp} target {target} -> leverage {q2(raw)}")
            return out
        case RiskParitySizing(target_volatility=target, allocation=alloc):
            return _risk_parity(views, policy, cov_annual, target, alloc)
        case _:
            assert_never(sizing)


def _risk_parity(
    views: Sequence[ContractView],
    policy: Policy,
    cov_annual: npt.NDArray[np.float64] | None,
    target: Decimal,
    alloc: AllocationParams,
) -> dict[str, tuple[Decimal, str]]:
    active = [v for v in views if v.direction != 0]
    out: dict[str, tuple[Decimal, str]] = {v.symbol: (ZERO, "flat") for v in views}
    if not active:
        return out
    vols = np.array([float(v.market.volatility) for v in active])
    cov: npt.NDArray[np.float64] | None = None
    why_not = ""
    square = (len(active), len(active))
    if alloc.method == "erc" and cov_annual is not None and cov_annual.shape == square:
        # The risk is the book's as held: a short leg's returns count negated, so the
        # covariance of the signed positions is D cov D, D = diag(direction). On the raw
        # covariance a long BTC / short ETH book was sized as if both were long (at correlation
        # 0.8 it carried a third of the target volatility, at -0.5 1.7 times it) and with three
        # or more legs the ERC weights were wrong too. The sign is the side this decision
        # holds: ``ContractView.direction`` is already resolved for the tick ("signal": the
        # signal's side now, "follow": the side of the position held), flat legs are not in
        # ``active``. The variances (the diagonal) are unchanged, so the degeneracy check and the
        # inverse-volatility fallback are too.
        signs = np.array([float(np.sign(v.direction)) for v in active])
        signed = cov_annual * np.outer(signs, signs)
        why_not = _degenerate(signed, active)
        if not why_not:
            cov = signed
    if cov is not None:
        weights = erc_weights(cov)
        method = "ERC"
    else:
        weights = inverse_vol_weights(vols)
        cov = np.diag(vols**2)
        method = "inverse-vol"
        if why_not:
            method += (
                f" (ERC needs a variance for every contract: {why_not} over the last "
                f"{alloc.covariance_window} candles)"
            )
    scaled = scale_to_target(weights, cov, float(target), float(alloc.max_gross_leverage))
    n = Decimal(len(views))
    for v, w_raw in zip(active, scaled, strict=True):
        w = Decimal(repr(float(w_raw)))
        sleeve_lev = min(max(w * n, policy.leverage.min), policy.leverage.max)
        out[v.symbol] = (
            sleeve_lev,
            f"{method} weight {w:.3f} of equity (gross cap {alloc.max_gross_leverage}) "
            f"-> leverage {q2(sleeve_lev)}",
        )
    return out


def _degenerate(cov: npt.NDArray[np.float64], active: Sequence[ContractView]) -> str:
    """Why ``cov`` cannot weigh ``active`` by equal risk contribution ("" when it can).

    A contract whose price did not move over the covariance window (shorter than the
    volatility window, which did move: a volatility window without a price change gets no
    decision, see ``Engine.read_market``) has a zero variance, and ERC has no risk to equalise
    for it (:func:`erc_weights` refuses it: the error escaped the tick, every tick until the
    window moved on). Its own volatility is still a valid estimate: the contracts are weighed
    by inverse volatility, as when the covariance cannot be measured at all."""
    if not np.all(np.isfinite(cov)):
        return "the covariance is not finite"
    diag = np.diag(cov)
    still = [v.symbol.split("/")[0] for v, var in zip(active, diag, strict=True) if var <= 0]
    return f"no price change for {', '.join(still)}" if still else ""


def decide(
    views: Sequence[ContractView],
    policy: Policy,
    cov_annual: npt.NDArray[np.float64] | None = None,
) -> list[Decision]:
    """Decide every contract. ``cov_annual`` (annualised covariance of the active contracts'
    returns, in ``views`` order, as if every one were long) is used by risk-parity ERC only,
    signed by each contract's direction (:func:`_risk_parity`)."""
    bases = base_leverages(views, policy, cov_annual)
    # The stop-loss part of the reason is the same for every contract: formatted once.
    stop_note = f"SL {describe(policy.stop_loss.kind, policy.stop_loss.distance)}"
    decisions = [_decide_one(v, policy, *bases[v.symbol], stop_note) for v in views]
    sizing = policy.sizing
    if (
        isinstance(sizing, RiskParitySizing)
        and sizing.allocation.method == "erc"
        and cov_annual is not None
    ):
        return _no_riskier_for_the_cuts(views, decisions, bases, cov_annual, policy)
    return decisions


def _no_riskier_for_the_cuts(
    views: Sequence[ContractView],
    decisions: list[Decision],
    bases: dict[str, tuple[Decimal, str]],
    cov_annual: npt.NDArray[np.float64],
    policy: Policy,
) -> list[Decision]:
    """risk_parity ERC: the book as decided no riskier than with the legs cut below their
    smoothed leverage put back there, the others at their ERC weight.

    ERC sizes the legs together, each on the others' diversification: a leg cut below where
    the hysteresis band and the maximum step put it (no increase in its re-entry cooldown, a
    ``follow`` contract, stale data, a venue restriction; the funding, liquidation and hard
    caps) leaves the others sized for a hedge that is not there. A long BTC / short ETH book
    at correlation 0.8 whose ETH was stopped out kept BTC at 1.58x equity alone: 1.58 times
    the target volatility. When the cut legs make the book riskier than it is with them at
    their smoothed leverage and the others at their weight (not at what they hold: measured on
    their own positions, the allowance moved against each resize and a free leg was sold and
    bought back tick after tick), the other legs are scaled down by one factor until it is not
    (the largest factor in [0, 1] that does it; where none does, the one of least risk). The
    cut legs are kept as decided: scaled too, a short leg that may not grow back was sold off
    tick after tick, each time the book was measured again. A cut that lowers the risk (the
    usual case of a long book) changes nothing, nor do the band and the step themselves (a
    hedge leg growing back by the maximum step does not sell the other leg only to buy it
    back). Measured on the signed sleeve leverages and the covariance of the raw returns, in
    the order of the active contracts as ``cov_annual`` is."""
    active = [i for i, v in enumerate(views) if v.direction != 0]
    if cov_annual.shape != (len(active), len(active)) or not np.all(np.isfinite(cov_annual)):
        return decisions
    lev = policy.leverage
    decided = np.zeros(len(active))
    smoothed = np.zeros(len(active))
    weights = np.zeros(len(active))
    cut = np.zeros(len(active), dtype=bool)
    for k, i in enumerate(active):
        v, d = views[i], decisions[i]
        price = v.market.mark_price
        if v.sleeve_equity <= 0 or price <= 0:
            return decisions
        decided[k] = float(d.target_qty * price / v.sleeve_equity)
        weights[k] = float(bases[v.symbol][0]) * v.direction
        # (the same smoothing and rounding as _decide_one's, before its caps: a leg only
        # rounded to its step is no cut)
        at, _ = smooth(v.current_leverage, bases[v.symbol][0], lev.hysteresis, lev.max_step)
        qty = v.instrument.floor_qty(q2(at) * v.sleeve_equity / price)
        smoothed[k] = float(qty * price / v.sleeve_equity) * v.direction
        cut[k] = abs(d.target_qty) < qty
    if not cut.any():
        return decisions
    # The reference: the cut legs where the smoothing put them, the others at their weight.
    # Not at what they hold: measured on their own positions, the allowance moved against each
    # resize by more than one for one, and a free leg was sold and bought back tick after tick.
    uncut = np.where(cut, smoothed, weights)
    free = np.where(cut, 0.0, decided)
    kept = np.where(cut, decided, 0.0)
    # the book's risk at factor s on the free legs: a s^2 + 2 b s + c
    a = float(free @ cov_annual @ free)
    b = float(free @ cov_annual @ kept)
    c = float(kept @ cov_annual @ kept)
    allowed = float(uncut @ cov_annual @ uncut)
    if a <= 0 or a + 2 * b + c <= allowed * (1 + 1e-9):
        return decisions
    disc = b * b - a * (c - allowed)
    s = (-b + float(np.sqrt(disc))) / a if disc >= 0 else -b / a
    s = min(max(s, 0.0), 1.0)
    after = a * s * s + 2 * b * s + c
    n = len(views)
    factor = Decimal(repr(s))
    note = (
        f"book volatility {np.sqrt(a + 2 * b + c) / n:.3f} as decided > "
        f"{np.sqrt(allowed) / n:.3f} with the legs held below their smoothed leverage there, "
        f"the others at their weight: the others x{s:.3f} (volatility "
        f"{np.sqrt(max(after, 0.0)) / n:.3f}) -> "
    )
    out = list(decisions)
    for k, i in enumerate(active):
        d = decisions[i]
        if not cut[k] and d.target_qty != 0:
            qty = views[i].instrument.floor_qty(abs(d.target_qty) * factor)
            out[i] = d.resized(qty, factor, note)
    return out


def _decide_one(
    v: ContractView, policy: Policy, base: Decimal, why: str, stop_note: str
) -> Decision:
    short = v.symbol.split("/")[0]
    market = v.market
    price = market.mark_price
    direction = v.direction
    if direction == 0:
        return Decision.flat(
            v.symbol, f"{short}: direction flat -> close", allow_increase=v.allow_increase
        )
    parts = [f"{short}: {why}"]
    current = v.current_leverage
    lev_params = policy.leverage
    lev, note = smooth(current, base, lev_params.hysteresis, lev_params.max_step)
    if note:
        parts.append(note if note.startswith("within") else f"-> {q2(lev)} {note}")
    lev, note = funding_cap(
        lev, direction, market.funding.annualized, policy.funding.max_annual_cost
    )
    if note:
        parts.append(note)
    # One daily-volatility unit, computed once for the stop distance and the buffer.
    vol_unit = daily_vol_unit(market, price)
    stop_loss = policy.stop_loss
    sl_dist = (
        stop_loss.distance * vol_unit  # distance() of a "vol" stop, on the unit above
        if stop_loss.kind == "vol"
        else distance(stop_loss.kind, stop_loss.distance, market, price)
    )
    buffer_units = policy.liquidation.buffer_vol_units
    buffer = buffer_units * vol_unit
    sleeve = v.sleeve_equity
    notional = lev * sleeve
    inst = v.instrument
    liq_cap = (
        liquidation_cap(inst, direction, price, notional, sl_dist, buffer) if notional > 0 else ZERO
    )
    if lev > liq_cap:
        parts.append(f"liquidation buffer {buffer_units} vol beyond SL -> leverage {q2(liq_cap)}")
        lev = liq_cap
    # min(v.max_leverage, bracket cap) as a comparison (the same element min() returns).
    hard = v.max_leverage
    bracket_cap = inst.max_leverage_for(notional)
    if bracket_cap < hard:
        hard = bracket_cap
    if lev > hard:
        parts.append(f"cap {q2(hard)}")
        lev = hard
    lev = q2(ZERO if lev < ZERO else lev)  # q2(max(lev, 0))
    qty = inst.floor_qty(lev * sleeve / price) if price > 0 else ZERO
    if qty > 0:
        capped = _within_venue_caps(v, qty, hard, parts)
        if capped is not None:
            qty = capped
            lev = q2(qty * price / sleeve)
    working = False
    participation = policy.orders.max_participation
    if participation is not None and qty > 0:
        qty, cut, working = within_participation(v, qty, participation)
        if cut is not None:
            lev = q2(qty * price / sleeve)
            parts.append(f"{cut}{qty}")
    position = v.position
    held = position.qty if position is not None else ZERO
    allowed = v.allow_increase and policy.allow_increase
    if not allowed:
        qty = _no_increase(policy, qty, held, direction, parts)
    above_cap = _held_above_cap(v, held, direction, parts)
    target_qty = qty * direction if qty != 0 else ZERO  # never -0 (a short's zero)
    stop, take = _protective_prices(v, policy, price, sl_dist, target_qty, parts)
    parts.append(stop_note)
    return Decision(
        symbol=v.symbol,
        direction=direction,
        target_leverage=lev,
        target_qty=target_qty,
        stop_loss=stop,
        take_profit=take,
        reason="; ".join(parts),
        allow_increase=allowed,
        participation_capped=working,
        above_cap=above_cap,
    )


def _within_venue_caps(
    v: ContractView, qty: Decimal, hard: Decimal, parts: list[str]
) -> Decimal | None:
    """``qty`` within the hard caps as the risk gate measures them (:func:`within_hard_caps`)
    and, for an increase, within the notional the isolated leverage setting held is allowed at
    (:func:`bot.policy.leverage.within_held_setting`); each cut said in ``parts``. ``None``:
    neither cut it."""
    cut = None
    capped, which = within_hard_caps(v, qty, hard)
    if which is not None:
        qty = cut = capped
        parts.append(f"{which} at last price {v.market.last_price} -> qty {qty}")
    if v.position is not None:
        capped, why = within_held_setting(v.instrument, v.position, v.market, qty, v.direction)
        if why is not None:
            cut = capped
            parts.append(why)
    return cut


def _no_increase(
    policy: Policy, qty: Decimal, held: Decimal, direction: int, parts: list[str]
) -> Decimal:
    """``qty`` (absolute, on the side ``direction``) held to the position ``held`` when the
    trading state or the policy allows no increase, said in ``parts``.

    The policy's own ``allow_increase = false`` binds the decision as the trading state's does:
    the planner sends no increase for such a decision, and a target it would never trade was
    recorded as the position decided, with nothing saying why it was never taken."""
    if held * direction > 0 and qty <= abs(held):
        return qty
    parts.append("no increase allowed" if policy.allow_increase else "no increase allowed (policy)")
    return min(qty, abs(held)) if held * direction > 0 else ZERO


def within_hard_caps(
    v: ContractView, qty: Decimal, max_leverage: Decimal
) -> tuple[Decimal, str | None]:
    """The largest quantity up to ``qty`` that the risk gate's per-contract caps accept, and
    which cap cut it (``None``: none did).

    The gate measures leverage and notional at the last price, which may be above the mark the
    leverage was sized on: a target at the leverage cap would be refused whenever it is. A
    notional cap sizes the position instead of vetoing every order: without it, an account
    whose target notional exceeds the cap would never trade at all. The venue's largest
    position (the last leverage bracket's cap, Binance -2027) is a cap of the same kind.
    """
    price = v.market.mark_price
    last = v.market.last_price
    ref = last if last > price else price
    most = max_leverage * v.sleeve_equity
    which = f"leverage cap {max_leverage}"
    if v.max_notional is not None and v.max_notional < most:
        most = v.max_notional
        which = f"notional cap {v.max_notional}"
    venue = v.instrument.max_position_notional
    if venue is not None and venue < most:
        most = venue
        which = f"the exchange's largest position {venue}"
    if qty * ref <= most:
        return qty, None
    return v.instrument.floor_qty(most * HARD_CAP_ROOM / ref), which


def _held_above_cap(v: ContractView, held: Decimal, direction: int, parts: list[str]) -> bool:
    """Whether the position held on the decided side is above a hard cap the risk gate measures
    (:func:`within_hard_caps`; the price rose since it was sized, or the equity fell), said in
    ``parts``. Such a position is cut to the target whatever the rebalance tolerance
    (:func:`bot.engine.planner.plan_size`): the gate checks only what an order adds, and a
    tolerance of 0.5 held 1.45 times the notional cap through a 43 % rally."""
    if held * direction <= 0:
        return False
    _, over = within_hard_caps(v, abs(held), v.max_leverage)
    if over is None:
        return False
    parts.append(f"held {abs(held)} above the {over}: cut within the tolerance too")
    return True


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
    stop = inst.stop_price(price - sign * sl_dist, sign)
    same_side = v.position is not None and v.position.sign == sign
    anchor = trailing_anchor(v.resting_stop, sign, price) if same_side else None
    if anchor is not None:
        # Trailing: a stop only ever moves toward the price, never away from it (from a resting
        # stop the mark has not crossed: see trailing_anchor).
        stop = max(stop, anchor) if sign > 0 else min(stop, anchor)
    # A stop at or below zero is not clamped here: the risk layer (bot.risk.stop_placement)
    # moves every stop into the valid range or cuts the size.
    take: Decimal | None = None
    tp = policy.take_profit
    if tp is not None:
        entry = v.position.entry_price if same_side and v.position is not None else price
        take = _beyond(v, entry, sign, distance(tp.kind, tp.distance, v.market, entry), parts)
        # A take-profit already behind the price would fire at once: push it beyond the price.
        if (take - price) * sign <= 0:
            take = _beyond(v, price, sign, distance(tp.kind, tp.distance, v.market, price), parts)
        if (take - price) * sign <= 0:
            # Still at or behind the price: a distance under one tick (zero volatility, a tick
            # that is a large fraction of the price). The nearest price the venue accepts is
            # one tick beyond the price (a trigger at it would fire at once: Binance -2021).
            tick = inst.tick_size
            take = inst.floor_price(price) + tick if sign > 0 else inst.ceil_price(price) - tick
        # Within the venue's price filter (Binance PRICE_FILTER, Bybit priceFilter): a trigger
        # beyond it is refused every tick; the bound is used while it is still beyond the price.
        if sign > 0 and inst.max_price is not None and take > inst.max_price:
            take = inst.floor_price(inst.max_price)
        elif sign < 0 and inst.min_price is not None and take < inst.min_price:
            take = inst.ceil_price(inst.min_price)
        if take <= 0 or (take - price) * sign <= 0:
            take = None
    return stop, take


def _beyond(
    v: ContractView, anchor: Decimal, sign: int, dist: Decimal, parts: list[str]
) -> Decimal:
    """The take-profit trigger ``dist`` beyond ``anchor`` on the side of a position of side
    ``sign``, on the tick grid, and never inside the round trip of its costs
    (:meth:`bot.domain.instrument.Instrument.round_trip`: the taker fee in and out and the
    exit's expected slippage). A take-profit closer than that closes at a loss every time it
    fires: a percent one is refused when the config is loaded (bot.config.models), but a
    volatility or ATR one is known only here, and 0.1 daily-volatility units of a calm contract
    are less than its fees. Such a one is placed at the round trip, rounded away from the
    anchor, and the reason says so."""
    inst = v.instrument
    round_trip = inst.round_trip(v.exit_slippage)
    least = anchor * round_trip
    take = inst.take_profit_price(anchor + sign * dist, sign)
    if (take - anchor) * sign >= least:
        return take
    parts.append(
        f"take-profit {dist / anchor * HUNDRED:.3f} % away is inside the round trip of fees "
        f"and exit slippage: at {round_trip * HUNDRED:.3f} %"
    )
    at = anchor + sign * least
    return inst.ceil_price(at) if sign > 0 else inst.floor_price(at)
