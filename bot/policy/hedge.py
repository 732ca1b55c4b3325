"""The hedge decision: a pure function of the book, the hedge instruments and ``[hedge]``.

Exposure measure: beta-weighted delta, ``sum(notional_i x beta_i)`` over the book's perpetual
targets for this tick and its spot holdings (quote currency, signed), with each beta measured
against the primary hedge instrument. The net exposure adds the hedge legs
(``qty x mark x beta``). Steps, each written into the reason:

1. the book's beta-delta and the net exposure, as multiples of equity;
2. a hedge that adds exposure (no book left, the account net of the other side from the book,
   or a hedge on the book's side) is cut toward the target, band or cooldown, when the cut
   lowers the absolute net exposure; closed whole whatever ``min_notional``;
3. inside the band around the target (``|net/equity - target| <= band``): keep the hedge;
4. cooldown since the last hedge change: keep the hedge, unless it is larger than the book
   needs (the book's stops fired): then it is cut toward the target, a cut that lowers the
   absolute net exposure is never delayed;
5. the instrument: the primary, unless its expected funding cost over ``holding_hours``
   exceeds ``max_funding_cost``; then the cheapest of the allowed instruments. Only a leg that
   may take new exposure now, or the one the hedge is held on, is chosen: a switch closes the
   held leg, and a new leg that cannot open would leave the book unhedged;
6. the size that brings the net exposure to the target. The target net has the book's sign and is
   never larger than the book: a hedge only ever offsets, it never adds market exposure;
7. caps: the leverage limit (hedge notional <= max_leverage x equity), the liquidation buffer
   (the hedge's own stop triggers before its liquidation), then rounding down to the step, and
   a leg's increase within the notional its isolated leverage setting is allowed at
   (:func:`bot.policy.leverage.within_held_setting`);
8. stop-loss like any position (trailing: it only moves toward the price).

Without the statistics of a hedge leg held or of the primary (a gap in the candles, data that
cannot be read), only steps 2 and 4's cuts are decided (:func:`cut_without_statistics`): a cut
needs the positions and their marks alone, an increase or a switch the statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from bot.config.hedge import HedgeParams
from bot.config.policy import Policy
from bot.domain.decision import Decision
from bot.domain.instrument import Instrument
from bot.domain.market import MarketSnapshot
from bot.domain.position import Position
from bot.policy.leverage import liquidation_cap, q2, within_held_setting
from bot.policy.protection import daily_vol_unit, describe, distance, trailing_anchor

ZERO = Decimal(0)
HOURS_PER_YEAR = Decimal(24 * 365)


@dataclass(frozen=True, slots=True)
class BookLeg:
    """One exposure of the book: a perpetual's target position or a spot holding."""

    name: str
    notional: Decimal  # signed, quote currency, at the mark
    beta: Decimal  # to the primary hedge instrument


@dataclass(frozen=True, slots=True)
class HedgeLeg:
    """One allowed hedge instrument as the policy sees it."""

    symbol: str
    instrument: Instrument
    market: MarketSnapshot
    beta: Decimal  # to the primary hedge instrument (1 for the primary itself)
    position: Position | None
    resting_stop: Decimal | None
    # The leg itself may take new exposure this tick: fresh data, no venue restriction, no
    # re-entry cooldown (the trading state is ``HedgeInputs.allow_increase``).
    may_open: bool = True

    @property
    def qty(self) -> Decimal:
        return self.position.qty if self.position is not None else ZERO

    @property
    def mark(self) -> Decimal:
        return self.market.mark_price

    @property
    def beta_delta(self) -> Decimal:
        return self.qty * self.market.mark_price * self.beta


@dataclass(frozen=True, slots=True)
class HedgeInputs:
    equity: Decimal
    book: tuple[BookLeg, ...]
    legs: tuple[HedgeLeg, ...]  # policy order: the first is the primary instrument
    now_ms: int
    last_change_ms: int | None  # last time a hedge order was sent (cooldown)
    allow_increase: bool  # the trading state allows increases (each leg: ``may_open`` too)
    max_leverage: Decimal  # cap on the hedge notional as a multiple of equity
    max_notional: Decimal | None = None  # the risk gate's notional cap on a hedge leg (quote)


@dataclass(frozen=True, slots=True)
class HedgeOutcome:
    decisions: tuple[Decision, ...]  # one per hedge leg, policy order
    book_beta_delta: Decimal  # quote
    net_before: Decimal  # quote, with the hedge as held
    net_after: Decimal  # quote, with the hedge at its targets
    reason: str


def short_name(symbol: str) -> str:
    return symbol.split("/")[0]


def book_beta_delta(book: Sequence[BookLeg]) -> Decimal:
    return sum((leg.notional * leg.beta for leg in book), ZERO)


def desired_net(book_bd: Decimal, equity: Decimal, target: Decimal) -> Decimal:
    """The net exposure the hedge aims at: the book's sign, never more than the book itself."""
    if book_bd == 0:
        return ZERO
    sign = 1 if book_bd > 0 else -1
    return sign * min(target * equity, abs(book_bd))


def funding_cost(leg: HedgeLeg, direction: int, hours: Decimal) -> Decimal:
    """Expected funding paid (+) or received (-) over ``hours``, fraction of the notional."""
    cost = direction * leg.market.funding.annualized * hours / HOURS_PER_YEAR
    return cost if cost != 0 else ZERO  # no "-0" in reasons


def decide_hedge(inputs: HedgeInputs, policy: Policy) -> HedgeOutcome:
    params = policy.hedge
    if params is None:
        raise ValueError(f"policy {policy.name} has no [hedge] section")
    if not inputs.legs:
        raise ValueError("no hedge instruments with market data")
    eq = inputs.equity
    book_bd = book_beta_delta(inputs.book)
    held_bd = sum((leg.beta_delta for leg in inputs.legs), ZERO)
    net = book_bd + held_bd
    if eq <= 0:
        why = f"equity {eq} <= 0 -> close the hedge"
        return _outcome(inputs, policy, {}, book_bd, net, why)
    want = desired_net(book_bd, eq, params.target_net_exposure)
    head = (
        f"book beta-delta {q2(book_bd / eq)}x equity, net {q2(net / eq)}x, "
        f"target {params.target_net_exposure}, band {params.band}"
    )
    needed = want - book_bd  # beta-delta the hedge must carry
    cut = _cut_if_adding(inputs, policy, params, book_bd, net, needed, held_bd, head)
    if cut is not None:
        return cut
    if abs(net - want) <= params.band * eq:
        return _hold(inputs, policy, book_bd, net, f"{head} -> inside the band, keep the hedge")
    wait_ms = _cooldown_left(inputs, params)
    if wait_ms > 0:
        cooling = f"{head} -> outside the band, cooldown {-(-wait_ms // 60_000)} min left"
        return _during_cooldown(
            inputs, policy, book_bd, net, needed, held_bd, cooling, params.min_notional
        )
    direction = 1 if needed > 0 else -1
    leg, funding_note = _choose(inputs, params, direction)
    notional = needed / leg.beta if leg.beta > 0 else ZERO
    notes = [funding_note] if funding_note else []
    cap = inputs.max_leverage * eq
    if abs(notional) > cap:
        notes.append(f"leverage cap {inputs.max_leverage}x equity")
        notional = direction * cap
    price = leg.market.mark_price
    qty = leg.instrument.floor_qty(abs(notional) / price) * direction if price > 0 else ZERO
    qty = _within_notional_cap(qty, leg, inputs.max_notional, notes)
    change = abs(qty - leg.qty) * price
    if change < params.min_notional and all(
        other.qty == 0 for other in inputs.legs if other is not leg
    ):
        why = f"{head} -> change {change:.0f} < minimum hedge notional {params.min_notional}"
        return _hold(inputs, policy, book_bd, net, why)
    if not _opens(inputs, leg) and (qty * leg.qty <= 0 or abs(qty) > abs(leg.qty)):
        qty = leg.qty if qty * leg.qty > 0 else ZERO  # keep a same-side hedge, else close
        notes.append("no increase allowed")
    targets = {leg.symbol: qty}
    after = book_bd + qty * price * leg.beta
    why = (
        f"book beta-delta {q2(book_bd / eq)}x equity, band {params.band} -> hedge "
        f"{q2(qty * price / eq)}x {short_name(leg.symbol)}"
        f" (beta {leg.beta:.2f}, net {q2(net / eq)}x -> {q2(after / eq)}x)"
    )
    if notes:
        why += "; " + "; ".join(notes)
    return _outcome(inputs, policy, targets, book_bd, net, why)


def _within_notional_cap(
    qty: Decimal, leg: HedgeLeg, cap: Decimal | None, notes: list[str]
) -> Decimal:
    """``qty`` cut to the notional cap the gate applies to the leg, measured at the higher of
    the mark and the last price (the gate's price): a larger order would be refused whole."""
    price = max(leg.market.mark_price, leg.market.last_price)
    if cap is None or price <= 0 or abs(qty) * price <= cap:
        return qty
    most = leg.instrument.floor_qty(cap / price)
    notes.append(f"notional cap {cap} at {price} -> qty {most}")
    return most if qty > 0 else -most


def _cooldown_left(inputs: HedgeInputs, params: HedgeParams) -> int:
    """Milliseconds of ``[hedge] cooldown_minutes`` left since the last hedge change (<= 0:
    none)."""
    return _wait_ms(inputs.now_ms, inputs.last_change_ms, params)


def _wait_ms(now_ms: int, last_change_ms: int | None, params: HedgeParams) -> int:
    if last_change_ms is None:
        return 0
    return params.cooldown_minutes * 60_000 - (now_ms - last_change_ms)


def _during_cooldown(
    inputs: HedgeInputs,
    policy: Policy,
    book_bd: Decimal,
    net: Decimal,
    needed: Decimal,
    held_bd: Decimal,
    cooling: str,
    min_notional: Decimal,
) -> HedgeOutcome:
    """Inside the cooldown a hedge larger than the book needs is still cut: the cooldown keeps
    the hedge from churning, and may delay an increase, but a hedge left behind when the book's
    stops fired (a long book stopped out in a crash leaves the account net short by the whole
    hedge) would be held into the rebound."""
    larger = f"{cooling}: the hedge is larger than the book needs"
    cut = _cut(inputs, policy, book_bd, net, needed, held_bd, larger, min_notional)
    return cut if cut is not None else _hold(inputs, policy, book_bd, net, cooling)


def _cut_if_adding(
    inputs: HedgeInputs,
    policy: Policy,
    params: HedgeParams,
    book_bd: Decimal,
    net: Decimal,
    needed: Decimal,
    held_bd: Decimal,
    head: str,
) -> HedgeOutcome | None:
    """A hedge that adds exposure cut to what the book needs, band or cooldown (``None``: it
    does not add exposure, or the cut would not lower the absolute net exposure). It adds
    exposure when there is no book left to offset (stopped out, its re-entry held), when it
    leaves the account net of the other side from the book, or when it is on the book's side.
    The band keeps an ordinary hedge from churning; it is no reason to keep a leftover smaller
    than the band, a naked position for as long as the book stays out."""
    adds = held_bd != 0 and (book_bd == 0 or net * book_bd < 0 or held_bd * book_bd > 0)
    if not adds:
        return None
    why = f"{head} -> the hedge adds exposure"
    wait_ms = _cooldown_left(inputs, params)
    if wait_ms > 0:
        why += f" (cooldown {-(-wait_ms // 60_000)} min left: a cut is never delayed)"
    return _cut(inputs, policy, book_bd, net, needed, held_bd, why, params.min_notional, adds=True)


def _cut(
    inputs: HedgeInputs,
    policy: Policy,
    book_bd: Decimal,
    net: Decimal,
    needed: Decimal,
    held_bd: Decimal,
    why: str,
    min_notional: Decimal,
    *,
    adds: bool = False,
) -> HedgeOutcome | None:
    """The hedge cut to what the book needs (``needed``), or ``None`` when it is not larger
    than that, or the cut would not lower the absolute net exposure or is below
    ``min_notional`` (``adds``: the hedge adds exposure, see :func:`_cut_targets`). Every held
    leg shrinks by the same factor, rounded toward zero: a cut only ever reduces, so neither
    the cooldown nor a refusal of increases holds it."""
    cut = _cut_targets(inputs.legs, book_bd, net, needed, held_bd, min_notional, adds=adds)
    if cut is None:
        return None
    targets, after = cut
    eq = inputs.equity
    why += f", cut now (net {q2(net / eq)}x -> {q2(after / eq)}x)"
    return _outcome(inputs, policy, targets, book_bd, net, why)


class _Held(Protocol):
    """What a cut reads of a leg: the position and its mark, no statistics."""

    @property
    def symbol(self) -> str: ...
    @property
    def instrument(self) -> Instrument: ...
    @property
    def qty(self) -> Decimal: ...
    @property
    def mark(self) -> Decimal: ...
    @property
    def beta(self) -> Decimal: ...


def _cut_targets(
    legs: Sequence[_Held],
    book_bd: Decimal,
    net: Decimal,
    needed: Decimal,
    held_bd: Decimal,
    min_notional: Decimal,
    *,
    adds: bool = False,
) -> tuple[dict[str, Decimal], Decimal] | None:
    """Each leg's target and the net exposure after the cut (see :func:`_cut`).

    ``min_notional`` keeps a hedge from churning on small changes; it never keeps a hedge that
    adds exposure (``adds``: no book left to offset, or the hedge on the wrong side) from being
    closed whole. Such a leftover below ``min_notional`` was never a change too small to
    trade: a close trades once, and held it is a naked position for as long as the book stays
    out (a partial cut of it is still a change, and waits for ``min_notional``)."""
    over = held_bd != 0 and (needed * held_bd <= 0 or abs(needed) < abs(held_bd))
    if not over:
        return None
    keep = max(needed / held_bd, ZERO)  # the fraction of the held hedge still needed
    targets = {
        leg.symbol: leg.instrument.floor_qty(abs(leg.qty) * keep) * (1 if leg.qty > 0 else -1)
        for leg in legs
    }
    after = book_bd + sum((targets[leg.symbol] * leg.mark * leg.beta for leg in legs), ZERO)
    change = sum((abs(targets[leg.symbol] - leg.qty) * leg.mark for leg in legs), ZERO)
    if abs(after) >= abs(net):
        return None
    closes = all(t == 0 for t in targets.values())
    if change < min_notional and not (adds and closes):
        return None
    return targets, after


@dataclass(frozen=True, slots=True)
class HeldLeg:
    """A hedge leg held while a hedge leg has no market statistics this tick (a gap in its
    candles, its data unreadable): the hedge can then only be cut. A cut needs the position
    and its mark; an increase or a switch needs the statistics (the stop distance, the
    liquidation buffer, the funding cost)."""

    symbol: str
    instrument: Instrument
    qty: Decimal
    mark: Decimal
    beta: Decimal
    leverage: Decimal  # the position's setting: a reduction does not change it
    stop: Decimal  # the resting stop (kept), or the one the engine places without statistics


def cut_without_statistics(
    equity: Decimal,
    book: Sequence[BookLeg],
    legs: Sequence[HeldLeg],
    now_ms: int,
    last_change_ms: int | None,
    policy: Policy,
    missing: str,
) -> HedgeOutcome | None:
    """The cuts :func:`decide_hedge` would make of the held hedge, decided on the positions
    and their marks alone; ``None``: no cut is due (the hedge is held until the statistics
    are back). A hedge that adds exposure (no book left to offset) is cut band or cooldown, a
    hedge outside the band larger than the book needs is cut too (as in the cooldown): either
    cut only lowers the absolute net exposure, which a gap in the data is no reason to delay
    (a short left behind when the book's stops fired would be held naked for up to a whole
    volatility window). ``missing`` names the legs without statistics for the reason."""
    params = policy.hedge
    if params is None:
        raise ValueError(f"policy {policy.name} has no [hedge] section")
    book_bd = book_beta_delta(book)
    held_bd = sum((leg.qty * leg.mark * leg.beta for leg in legs), ZERO)
    if held_bd == 0:
        return None
    net = book_bd + held_bd
    eq = equity
    if eq <= 0:
        targets: dict[str, Decimal] = {}
        after = book_bd
        why = f"{missing}: only cuts; equity {eq} <= 0"
    else:
        want = desired_net(book_bd, eq, params.target_net_exposure)
        needed = want - book_bd
        head = (
            f"{missing}: only cuts; book beta-delta {q2(book_bd / eq)}x equity, net "
            f"{q2(net / eq)}x, target {params.target_net_exposure}, band {params.band}"
        )
        adds = book_bd == 0 or net * book_bd < 0 or held_bd * book_bd > 0
        if adds:
            why = f"{head} -> the hedge adds exposure"
        elif abs(net - want) <= params.band * eq:
            return None  # inside the band: kept, as with statistics
        else:
            why = f"{head} -> outside the band: the hedge is larger than the book needs"
        wait_ms = _wait_ms(now_ms, last_change_ms, params)
        if wait_ms > 0:
            why += f" (cooldown {-(-wait_ms // 60_000)} min left: a cut is never delayed)"
        cut = _cut_targets(legs, book_bd, net, needed, held_bd, params.min_notional, adds=adds)
        if cut is None:
            return None
        targets, after = cut
        why += f", cut now (net {q2(net / eq)}x -> {q2(after / eq)}x)"
    decisions = []
    for leg in legs:
        qty = targets.get(leg.symbol, ZERO)
        name = short_name(leg.symbol)
        if qty == 0:
            decisions.append(
                Decision.flat(leg.symbol, f"{name} hedge: {why} -> close", allow_increase=False)
            )
            continue
        decisions.append(
            Decision(
                symbol=leg.symbol,
                direction=1 if qty > 0 else -1,
                target_leverage=leg.leverage,
                target_qty=qty,
                stop_loss=leg.stop,
                take_profit=None,
                reason=f"{name} hedge: {why}; stop kept",
                allow_increase=False,
            )
        )
    return HedgeOutcome(tuple(decisions), book_bd, net, after, why)


def _opens(inputs: HedgeInputs, leg: HedgeLeg) -> bool:
    """Whether ``leg`` may take new exposure this tick (the trading state and the leg's own)."""
    return inputs.allow_increase and leg.may_open


def _choose(inputs: HedgeInputs, params: HedgeParams, direction: int) -> tuple[HedgeLeg, str]:
    """The leg the hedge is sized on. Every other leg is closed (the old leg before the new one
    opens), so a leg that cannot take new exposure now (increases refused, its data stale, the
    venue restricting it, a re-entry cooldown) is never switched to: the switch would close the
    held hedge and leave the book unhedged. The held leg is kept instead."""
    legs = inputs.legs
    primary = legs[0]
    limit = params.max_funding_cost
    hours = params.holding_hours
    cost = funding_cost(primary, direction, hours)

    def held(leg: HedgeLeg) -> bool:
        return leg.qty * direction > 0

    def cheapest(candidates: Sequence[HedgeLeg]) -> HedgeLeg:
        return min(
            candidates, key=lambda leg: (funding_cost(leg, direction, hours), legs.index(leg))
        )

    hedging = [leg for leg in legs if leg.beta > 0]  # beta 0 cannot hedge
    usable = [leg for leg in hedging if _opens(inputs, leg) or held(leg)]
    if limit is None or cost <= limit or len(legs) == 1:
        kept = next((leg for leg in usable if held(leg)), None)
        if not _opens(inputs, primary) and not held(primary) and kept is not None:
            # Back to the primary would close the leg held and open nothing.
            return kept, (
                f"{short_name(primary.symbol)} may take no new exposure now, the hedge stays "
                f"on {short_name(kept.symbol)}"
            )
        if limit is not None and cost > limit:
            return primary, (
                f"{short_name(primary.symbol)} funding {cost:.4%} over {hours}h > limit "
                f"{limit:.4%}, no alternative instrument"
            )
        return primary, ""
    best = cheapest(usable or [primary])
    wanted = cheapest(hedging or [primary])
    over = f"{short_name(primary.symbol)} funding {cost:.4%} over {hours}h > limit {limit:.4%}"
    if wanted is not best:
        over += f", {short_name(wanted.symbol)} may take no new exposure now"
    elif best is primary:
        return primary, ""
    best_cost = funding_cost(best, direction, hours)
    return best, f"{over} -> {short_name(best.symbol)} ({best_cost:.4%})"


def _hold(
    inputs: HedgeInputs, policy: Policy, book_bd: Decimal, net: Decimal, why: str
) -> HedgeOutcome:
    targets = {leg.symbol: leg.qty for leg in inputs.legs}
    return _outcome(inputs, policy, targets, book_bd, net, why)


def _outcome(
    inputs: HedgeInputs,
    policy: Policy,
    targets: dict[str, Decimal],
    book_bd: Decimal,
    net: Decimal,
    why: str,
) -> HedgeOutcome:
    """One decision per leg: the chosen target, every other leg closed."""
    decisions = []
    after = book_bd
    for leg in inputs.legs:
        qty = targets.get(leg.symbol, ZERO)
        after += qty * leg.market.mark_price * leg.beta
        decisions.append(_leg_decision(leg, qty, policy, inputs, why))
    return HedgeOutcome(tuple(decisions), book_bd, net, after, why)


def _leg_decision(
    leg: HedgeLeg, qty: Decimal, policy: Policy, inputs: HedgeInputs, why: str
) -> Decision:
    name = short_name(leg.symbol)
    if qty == 0:
        closing = "close" if leg.qty != 0 else "flat"
        return Decision.flat(leg.symbol, f"{name} hedge: {why} -> {closing}")
    sign = 1 if qty > 0 else -1
    price = leg.market.mark_price
    notional = abs(qty) * price
    sl_dist = distance(policy.stop_loss.kind, policy.stop_loss.distance, leg.market, price)
    buffer = policy.liquidation.buffer_vol_units * daily_vol_unit(leg.market, price)
    # The leverage setting decides the isolated margin the hedge locks: the largest one whose
    # liquidation stays beyond the stop plus the buffer, within the leverage cap (a hedge at a
    # high setting is the first thing a squeeze gapping past its stop would liquidate).
    lev = min(
        liquidation_cap(leg.instrument, sign, price, notional, sl_dist, buffer),
        leg.instrument.max_leverage_for(notional),
        max(inputs.max_leverage - 1, Decimal(1)),  # the planner's setting is one step above
    )
    parts = [f"{name} hedge: {why}"]
    if lev * inputs.equity < notional:
        # Not even the smallest setting keeps liquidation beyond the stop for this size.
        capped = leg.instrument.floor_qty(max(lev, ZERO) * inputs.equity / price)
        parts.append(f"liquidation buffer -> size {capped}")
        qty = capped * sign
        if qty == 0:
            return Decision.flat(leg.symbol, "; ".join(parts))
    if leg.position is not None:
        # A leg grown into a bracket whose maximum is below its isolated setting would need the
        # setting lowered, which Binance refuses (as for the book's contracts, decide.py).
        capped, held_setting = within_held_setting(
            leg.instrument, leg.position, leg.market, abs(qty), sign
        )
        if held_setting is not None:
            parts.append(held_setting)
            qty = capped * sign
    stop = leg.instrument.stop_price(price - sign * sl_dist, sign)
    anchor = (
        trailing_anchor(leg.resting_stop, sign, price)
        if leg.position is not None and leg.position.sign == sign
        else None
    )
    if anchor is not None:  # trailing, as the book's stops (bot.policy.decide)
        stop = max(stop, anchor) if sign > 0 else min(stop, anchor)
    if stop <= 0:
        stop = leg.instrument.tick_size
    parts.append(f"SL {describe(policy.stop_loss.kind, policy.stop_loss.distance)}")
    return Decision(
        symbol=leg.symbol,
        direction=sign,
        target_leverage=q2(max(lev, Decimal(1))),
        target_qty=qty,
        stop_loss=stop,
        take_profit=None,
        reason="; ".join(parts),
        allow_increase=_opens(inputs, leg),
    )
