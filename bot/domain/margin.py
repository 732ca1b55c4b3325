"""Margin mathematics for linear USDT-margined perpetuals with tiered leverage brackets.

Follows Binance USDⓈ-M's published rules (one-way mode), which Bybit's linear contracts share in
shape (maintenance margin = notional x rate - deduction):

- maintenance margin of a position: ``MM = |notional| * MMR - cum``, with (MMR, cum) from the
  bracket that contains ``|notional|``;
- liquidation price (https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93)::

      LP = (WB - TMM1 + UPNL1 + cum - side * |q| * EP) / (|q| * MMR - side * |q|)

  with WB the wallet balance (the position's isolated margin in isolated mode, where TMM1 = UPNL1
  = 0), TMM1 / UPNL1 the maintenance margin and unrealised PnL of every other position (cross
  mode), side +1 long / -1 short, EP the entry price. It is the price at which the margin balance
  ``WB - TMM1 + UPNL1 + side * |q| * (P - EP)`` equals this position's maintenance margin.

Units: prices and notionals in the quote currency (USDT), quantities in the base asset (contract
size 1), rates and leverage as plain ``Decimal`` fractions/multipliers. The formula ignores fees,
funding and the liquidation clearance fee, as Binance's published formula does.

Bybit (``Instrument.margin_model`` ``BYBIT_UTA``, set by the loader for the ``bybit`` venue) is
solved differently, inside the same functions, so every caller (``bot calc``, the simulated
exchange, the engine's estimates, the leverage solve, stress) uses the venue's arithmetic; see
:func:`_solve_bybit` for the formula, its sources and the conservative choices.

Nothing here does I/O; every function is pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from bot.domain.enums import MarginMode
from bot.domain.instrument import Bracket, Instrument, MarginModel
from bot.domain.position import Position

ZERO = Decimal(0)
ONE = Decimal(1)
LEVERAGE_STEP = Decimal("0.01")
_BYBIT = MarginModel.BYBIT_UTA  # bound once: a member looked up on its enum class is slow

__all__ = [
    "cross_maintenance",
    "initial_margin",
    "isolated_liquidation_distance",
    "liquidation_price_cross",
    "liquidation_price_isolated",
    "maintenance_margin",
    "margin_ratio",
    "max_leverage_with_liquidation_beyond",
    "worst_margin",
]


def initial_margin(notional: Decimal, leverage: Decimal) -> Decimal:
    """Margin (quote currency) to open ``|notional|`` at ``leverage`` (x): |notional| / leverage."""
    if leverage <= ZERO:
        raise ValueError(f"initial_margin: leverage must be > 0, got {leverage}")
    return abs(notional) / leverage


def maintenance_margin(instrument: Instrument, notional: Decimal) -> Decimal:
    """Maintenance margin (quote currency) of a position of ``notional``, sign ignored.

    ``|notional| * MMR - cum`` of the bracket containing ``|notional|``. ``cum`` makes this
    continuous across bracket floors, so a position that grows by one tick never jumps.

    On Bybit's Unified Trading Account the maintenance margin also holds the estimated fee to
    close the position ("Maintenance Margin = Position Size x Mark Price x MMR + Estimated Fee to
    Close Position", https://www.bybit.com/en/help-center/article/Glossary-Unified-Trading-Account):
    taken here as the taker fee on ``|notional|`` (the position's value at the price the caller
    values it at, its mark for an account's pools), so the account's total (cross) is never
    below the venue's for a long, whose fee is charged on the lower bankruptcy value.
    """
    tiered = _tiered_maintenance(instrument, notional)
    if instrument.margin_model is _BYBIT:
        return tiered + abs(notional) * instrument.taker_fee
    return tiered


def _tiered_maintenance(instrument: Instrument, notional: Decimal) -> Decimal:
    """``|notional| * MMR - deduction`` of the tier containing ``|notional|`` (both venues)."""
    bracket = instrument.bracket_for(notional)
    return abs(notional) * bracket.maint_margin_rate - bracket.maint_amount


def position_maintenance(instrument: Instrument, position: Position, mark: Decimal) -> Decimal:
    """Maintenance margin of an open ``position`` at ``mark`` as its venue's liquidation rule
    holds it, so that its margin ratio reaches 1 at the liquidation price this module gives.

    Binance: :func:`maintenance_margin` of the value at the mark. Bybit (:func:`_solve_bybit`):
    the larger of the tiered maintenance on the value at entry and at the mark (a long is held
    to its entry value as the price falls), plus the fee to close: on the bankruptcy value for
    an isolated position, on the value at the mark in cross. Valued at the mark alone, a Bybit
    long's ratio read below 1 at its liquidation price (about 0.91 at 10x, 0.53 at 2x, where
    the price has halved), so the margin-ratio alert came late or not at all."""
    if instrument.margin_model is not _BYBIT:
        return maintenance_margin(instrument, position.notional(mark))
    if position.margin_mode is not MarginMode.ISOLATED:
        return cross_maintenance(instrument, position.qty, position.entry_price, mark)
    q = abs(position.qty)
    tiered = max(
        _tiered_maintenance(instrument, q * mark),
        _tiered_maintenance(instrument, q * position.entry_price),
    )
    fee = _bybit_close_fee(
        instrument, position.sign, q, position.entry_price, position.isolated_margin
    )
    return tiered + fee


def cross_maintenance(
    instrument: Instrument, qty: Decimal, entry_price: Decimal, mark: Decimal
) -> Decimal:
    """:func:`position_maintenance` of a cross position of ``qty`` (sign ignored) bought or
    sold at ``entry_price``, at ``mark``: what an account's cross maintenance adds up (the
    simulated exchange's account liquidation, the other positions held fixed in a cross
    liquidation price), so it is the one rule the alerts' margin ratio reads.

    Binance: :func:`maintenance_margin` of the value at the mark. Bybit: the larger of the
    tiered maintenance on the value at entry and at the mark, plus the taker fee on the value
    at the mark (the fee to close in the UTA's maintenance margin)."""
    notional = abs(qty) * mark
    if instrument.margin_model is not _BYBIT:
        return maintenance_margin(instrument, notional)
    tiered = max(
        _tiered_maintenance(instrument, notional),
        _tiered_maintenance(instrument, abs(qty) * entry_price),
    )
    return tiered + notional * instrument.taker_fee


def margin_ratio(maintenance_total: Decimal, margin_balance: Decimal) -> Decimal:
    """Account (cross) or position (isolated) margin ratio: maintenance / margin balance.

    ``>= 1`` means the exchange liquidates. With no maintenance requirement the ratio is 0 whatever
    the balance; with maintenance > 0 and a margin balance <= 0 it is ``Decimal('Infinity')``.
    """
    if maintenance_total < ZERO:
        raise ValueError(f"margin_ratio: maintenance_total must be >= 0, got {maintenance_total}")
    if maintenance_total == ZERO:
        return ZERO
    if margin_balance <= ZERO:
        return Decimal("Infinity")
    return maintenance_total / margin_balance


@dataclass(frozen=True, slots=True)
class MarginPart:
    """One margin pool: the cross positions together (``where`` "cross"), or one isolated
    position (``where`` its symbol)."""

    where: str
    maintenance: Decimal
    balance: Decimal  # the pool's wallet plus its unrealised PnL

    @property
    def ratio(self) -> Decimal:
        return margin_ratio(self.maintenance, self.balance)


def worst_margin(
    held: Iterable[tuple[Position, Instrument, Decimal]], wallet: Decimal
) -> MarginPart | None:
    """The margin pool closest to liquidation (the highest :func:`margin_ratio`) among the cross
    positions (their maintenance over the wallet outside isolated margins plus their unrealised
    PnL) and each isolated position (its maintenance over its own isolated margin plus its
    unrealised PnL): an isolated position is liquidated on its own margin, whatever the
    account's equity. ``held``: (position, its contract, its mark). None when an isolated
    position's margin is not known (<= 0: the venue did not say)."""
    cross = MarginPart("cross", ZERO, wallet)
    parts = []
    for pos, inst, mark in held:
        if not pos.is_open:
            continue
        mm = position_maintenance(inst, pos, mark)
        upnl = pos.unrealized_pnl(mark)
        if pos.margin_mode is MarginMode.ISOLATED:
            if pos.isolated_margin <= ZERO:
                return None
            parts.append(MarginPart(pos.symbol, mm, pos.isolated_margin + upnl))
            cross = MarginPart("cross", cross.maintenance, cross.balance - pos.isolated_margin)
        else:
            cross = MarginPart("cross", cross.maintenance + mm, cross.balance + upnl)
    return max([cross, *parts], key=lambda part: part.ratio)


def liquidation_price_isolated(
    instrument: Instrument, qty: Decimal, entry_price: Decimal, isolated_margin: Decimal
) -> Decimal | None:
    """Liquidation (mark) price of an isolated one-way position, or ``None`` if it has none.

    ``qty`` is signed (> 0 long, < 0 short, base asset); ``isolated_margin`` is the position's
    isolated wallet (quote currency, Binance ``isolatedWallet``). Returns ``None`` for a flat
    position and for a long whose margin covers the whole notional (the formula would give a price
    <= 0). See :func:`_solve` for how the bracket is chosen.
    """
    if isolated_margin < ZERO:
        raise ValueError(
            f"liquidation_price_isolated({instrument.symbol}): isolated_margin must be >= 0, "
            f"got {isolated_margin}"
        )
    _check_price("entry_price", entry_price, instrument)
    if qty == ZERO:
        return None
    return _solve(instrument, 1 if qty > ZERO else -1, abs(qty), entry_price, isolated_margin)


def liquidation_price_cross(
    instrument: Instrument,
    qty: Decimal,
    entry_price: Decimal,
    wallet_balance: Decimal,
    other_maintenance: Decimal,
    other_unrealized_pnl: Decimal,
) -> Decimal | None:
    """Liquidation (mark) price of a cross-margin one-way position, or ``None`` if it has none.

    ``wallet_balance`` is the cross wallet balance (quote currency, excluding unrealised PnL);
    ``other_maintenance`` (TMM1) and ``other_unrealized_pnl`` (UPNL1) cover every *other* cross
    position and are held fixed, as in Binance's formula (each other position's maintenance
    as :func:`cross_maintenance` holds it). Raises ``ValueError`` for a short when the account
    is below maintenance at every positive price (no finite price to report). At the price
    returned the account's margin ratio on :func:`position_maintenance` is exactly 1.
    """
    if wallet_balance < ZERO:
        raise ValueError(
            f"liquidation_price_cross({instrument.symbol}): wallet_balance must be >= 0, "
            f"got {wallet_balance}"
        )
    if other_maintenance < ZERO:
        raise ValueError(
            f"liquidation_price_cross({instrument.symbol}): other_maintenance must be >= 0, "
            f"got {other_maintenance}"
        )
    _check_price("entry_price", entry_price, instrument)
    if qty == ZERO:
        return None
    balance = wallet_balance - other_maintenance + other_unrealized_pnl
    side = 1 if qty > ZERO else -1
    if instrument.margin_model is _BYBIT:
        return _solve_bybit_cross(instrument, side, abs(qty), entry_price, balance)
    return _solve_binance(instrument, side, abs(qty), entry_price, balance)


def liquidation_price_cross_any_wallet(
    instrument: Instrument,
    qty: Decimal,
    entry_price: Decimal,
    wallet_balance: Decimal,
    other_maintenance: Decimal,
    other_unrealized_pnl: Decimal,
) -> Decimal | None:
    """:func:`liquidation_price_cross` for a wallet that may be below zero: a loss realised
    past it (a stop filled in a gap) while other positions hold profits leaves the account on
    its margin balance. Binance's formula takes WB - TMM1 + UPNL1 as one sum, so the deficit
    counts with the other positions' PnL. (Taking the wallet as zero instead would put the
    liquidation price farther than it is, and a stop planned on it beyond it.)"""
    deficit = min(wallet_balance, ZERO)
    return liquidation_price_cross(
        instrument,
        qty,
        entry_price,
        wallet_balance - deficit,
        other_maintenance,
        other_unrealized_pnl + deficit,
    )


def max_leverage_with_liquidation_beyond(
    instrument: Instrument,
    side: int,
    entry_price: Decimal,
    notional: Decimal,
    limit_price: Decimal,
) -> Decimal:
    """Largest isolated leverage whose liquidation price is at or beyond ``limit_price``.

    "Beyond" means at or below the limit for a long (``side`` +1) and at or above it for a short
    (``side`` -1). The position is fresh: ``|q| = notional / entry_price`` and isolated margin
    ``notional / leverage``. The result is capped by the bracket's max leverage for ``notional``
    and rounded *down* to 0.01, so the liquidation price at the result is beyond the limit and at
    result + 0.01 it is not (unless the cap applies).

    Closed form: the liquidation price is monotone in the margin (more margin moves it away from
    entry), so the leverage is largest when the position liquidates exactly at the limit. There
    the margin balance equals the maintenance margin of the notional at the limit::

        margin_min = side * |q| * (EP - limit) + MM(|q| * limit)
        leverage   = notional / margin_min

    using the bracket of ``|q| * limit`` (exact, no search: MM is continuous); Bybit's solve is
    :func:`_bybit_margin_to_liquidate_at`. If ``margin_min <= 0`` any leverage qualifies and the
    bracket cap is returned. Returns 0 when even 1x is not enough (``margin_min > notional``);
    on Binance's formula that only happens to shorts whose limit is above about twice the
    entry. A long at 1x has margin = notional and liquidation price <= 0, i.e. it cannot be
    liquidated, so a long always gets at least 1x there (on Bybit's, a long at 1x liquidates
    at about EP x MMR: a limit below that gets 0).
    """
    _check_side(side)
    _check_price("entry_price", entry_price, instrument)
    _check_price("limit_price", limit_price, instrument)
    if notional <= ZERO:
        raise ValueError(
            f"max_leverage_with_liquidation_beyond({instrument.symbol}): notional must be > 0, "
            f"got {notional}"
        )
    q = notional / entry_price
    if instrument.margin_model is _BYBIT:
        margin_min = _bybit_margin_to_liquidate_at(instrument, side, q, entry_price, limit_price)
    else:
        margin_min = side * q * (entry_price - limit_price) + maintenance_margin(
            instrument, q * limit_price
        )
    cap = instrument.max_leverage_for(notional)
    leverage = cap if margin_min <= ZERO else min(notional / margin_min, cap)
    leverage = leverage.quantize(LEVERAGE_STEP, rounding=ROUND_FLOOR)
    return leverage if leverage >= ONE else ZERO


def isolated_liquidation_distance(
    instrument: Instrument, leverage: Decimal, notional: Decimal, side: int | None = None
) -> Decimal:
    """Fractional distance from entry to liquidation of a fresh isolated position.

    ``|LP - EP| / EP`` for a position of ``notional`` (quote currency) opened at ``leverage`` with
    isolated margin ``notional / leverage``. The bracket is the one at the liquidation notional,
    as in :func:`liquidation_price_isolated`. ``side`` +1 / -1 picks long or short; ``None`` (the
    default) returns the smaller of the two, the short's, which is the conservative figure. A long
    that cannot be liquidated (leverage about 1x or below) has distance 1 (price falls to zero).
    """
    if leverage <= ZERO:
        raise ValueError(f"isolated_liquidation_distance: leverage must be > 0, got {leverage}")
    if notional <= ZERO:
        raise ValueError(f"isolated_liquidation_distance: notional must be > 0, got {notional}")
    if side is None:
        return min(
            isolated_liquidation_distance(instrument, leverage, notional, 1),
            isolated_liquidation_distance(instrument, leverage, notional, -1),
        )
    _check_side(side)
    # Entry price 1 and |q| = notional: the liquidation price is then the ratio LP / EP and the
    # liquidation notional |q| * LP selects the bracket exactly as for any real entry price.
    lp = _solve(instrument, side, notional, ONE, notional / leverage)
    if lp is None:
        return ONE
    return abs(lp - ONE)


# ------------------------------------------------------------------------------------ internals


def _solve(
    instrument: Instrument, side: int, q: Decimal, entry: Decimal, balance: Decimal
) -> Decimal | None:
    """The liquidation price by the contract's venue formula (``balance``, ``q``: as below)."""
    if instrument.margin_model is _BYBIT:
        return _solve_bybit(instrument, side, q, entry, balance)
    return _solve_binance(instrument, side, q, entry, balance)


def _solve_bybit(
    instrument: Instrument, side: int, q: Decimal, entry: Decimal, balance: Decimal
) -> Decimal | None:
    """Bybit's liquidation price of a position with margin ``balance`` (isolated: the position's
    margin; cross: wallet - others' maintenance + others' PnL, as for Binance).

    Bybit's USDT-contract page gives, with the maintenance margin on the position value at
    ENTRY (https://www.bybit.com/en/help-center/article/Liquidation-Price-USDT-Contract)::

        LP = EP - side * (IM - MM) / |q|,  MM = |q| * EP * MMR - deduction  (tier of |q| * EP)

    and on the Unified Trading Account the maintenance margin also holds the estimated fee to
    close, the taker fee on the bankruptcy value, the position at the price where its margin is
    gone (https://www.bybit.com/en/help-center/article/Liquidation-Price-Calculation-under-Isolated-Mode-Unified-Trading-Account,
    https://www.bybit.com/en/help-center/article/Bankruptcy-Price-Perpetual-and-Expiry-Contracts)::

        fee = taker * |q| * BP,  BP = EP - side * balance / |q|

    The same UTA page, in later versions, writes the maintenance margin at the MARK price
    instead (Binance's form, LP = (side*|q|*EP - balance' - deduction) / (|q| * (side - MMR))
    with the tier at the liquidation notional). Which valuation the venue applies to an account
    cannot be told from here, so this returns the price NEARER to the entry of the two, both
    with the fee to close: for a long the entry valuation (MM does not shrink as the price
    falls), for a short the mark valuation (MM grows as the price rises). The margin here is
    the position's margin without the fee Bybit reserves for the close, and the fee still
    counts in the maintenance: both make the estimate nearer, never farther, than the venue's.
    So for the same position and tiers the result is never farther from the entry than
    Binance's formula gives. Cross (UTA): Bybit liquidates the whole account when its
    maintenance-margin rate reaches 100 % and reports a cross position's liquidation price as
    an estimate only (https://www.bybit.com/en/help-center/article/UTA-Trading-Rules,
    https://bybit-exchange.github.io/docs/v5/position); there is no per-position closed form,
    so a cross position is solved on the same rule by :func:`_solve_bybit_cross`, with the
    fee to close on the value at the mark as :func:`position_maintenance` holds it in cross.
    """
    fee = _bybit_close_fee(instrument, side, q, entry, balance)
    at_entry = entry - side * (balance - fee - _tiered_maintenance(instrument, q * entry)) / q
    at_mark = _solve_binance(instrument, side, q, entry, balance - fee)
    return _nearer_root(instrument, side, q, entry, balance, at_entry, at_mark)


def _solve_bybit_cross(
    instrument: Instrument, side: int, q: Decimal, entry: Decimal, balance: Decimal
) -> Decimal | None:
    """Bybit's liquidation price of a cross position on the account's ``balance`` (wallet -
    others' maintenance + others' PnL, the others held fixed): the mark ``P`` at which the
    margin balance ``balance + side * q * (P - EP)`` meets :func:`cross_maintenance`, the
    larger of the tiered maintenance at entry and at the mark plus the taker fee on ``q * P``.

    Each valuation alone is linear in ``P`` (the mark one tier by tier)::

        entry: P = (MM(q * EP) - balance + side * q * EP) / (q * (side - taker))
        mark:  Binance's solve with each tier's rate raised by the taker fee

    The surplus over the larger maintenance is the smaller of the two surpluses, both rising
    with the price for a long and falling for a short, so it meets zero at the farther-up of
    the two roots for a long and the farther-down for a short: the root nearer the entry."""
    taker = instrument.taker_fee
    at_entry = (_tiered_maintenance(instrument, q * entry) - balance + side * q * entry) / (
        q * (side - taker)
    )
    at_mark = _solve_binance(instrument, side, q, entry, balance, fee_rate=taker)
    return _nearer_root(instrument, side, q, entry, balance, at_entry, at_mark)


def _nearer_root(
    instrument: Instrument,
    side: int,
    q: Decimal,
    entry: Decimal,
    balance: Decimal,
    at_entry: Decimal,
    at_mark: Decimal | None,
) -> Decimal | None:
    """Of Bybit's two roots (maintenance valued at entry, at the mark), the one nearer the
    entry, where the larger maintenance is first met: the higher for a long (None: not
    liquidated above a price of 0), the lower for a short (an error when the account is below
    maintenance at every price)."""
    if side > 0:
        prices = [p for p in (at_entry, at_mark) if p is not None and p > ZERO]
        return max(prices) if prices else None
    if at_entry <= ZERO:
        raise ValueError(
            f"{instrument.symbol}: margin balance {balance} is below Bybit's maintenance margin "
            f"at every price for a short of {q} at {entry}: the account is already liquidatable"
        )
    return at_entry if at_mark is None else min(at_entry, at_mark)


def _bybit_close_fee(
    instrument: Instrument, side: int, q: Decimal, entry: Decimal, balance: Decimal
) -> Decimal:
    """Bybit's estimated fee to close: the taker fee on the bankruptcy value ``|q| * EP - side *
    balance`` (0 for a long whose margin covers its whole value: it has no bankruptcy price)."""
    bankrupt_value = q * entry - side * balance
    return bankrupt_value * instrument.taker_fee if bankrupt_value > ZERO else ZERO


def _bybit_margin_to_liquidate_at(
    instrument: Instrument, side: int, q: Decimal, entry: Decimal, limit: Decimal
) -> Decimal:
    """The margin M at which :func:`_solve_bybit` puts the liquidation exactly at ``limit``.

    Both valuations must lie at or beyond the limit. At the limit, with the fee to close
    ``taker * (|q| * EP - side * M)``::

        M - fee = side * |q| * (EP - limit) + MM,   MM = MM(|q| * EP) (entry) or MM(|q| * limit)

    so ``M = (side*|q|*(EP - limit) + max(MM(|q|*EP), MM(|q|*limit)) + taker*|q|*EP) / (1 + side
    * taker)``: the larger maintenance needs the larger margin. (A long's M above its whole value
    has no bankruptcy price and no fee, but such an M means a leverage below 1, refused anyway.)
    """
    maintenance = max(
        _tiered_maintenance(instrument, q * entry), _tiered_maintenance(instrument, q * limit)
    )
    taker = instrument.taker_fee
    return (side * q * (entry - limit) + maintenance + taker * q * entry) / (ONE + side * taker)


def _solve_binance(
    instrument: Instrument,
    side: int,
    q: Decimal,
    entry: Decimal,
    balance: Decimal,
    fee_rate: Decimal = ZERO,
) -> Decimal | None:
    """Solve Binance's liquidation formula, choosing the bracket of the liquidation notional.

    ``balance`` is WB (isolated) or WB - TMM1 + UPNL1 (cross); ``q`` = |qty| > 0. ``fee_rate``
    (Bybit cross: the taker fee to close on the value at the mark) is added to every tier's
    maintenance rate; 0 leaves Binance's arithmetic as it is.

    Method: the margin surplus ``s(P) = balance + side*q*(P - EP) - MM(q*P)`` is strictly monotone
    in P (slope ``q*(1 - MMR) > 0`` for a long, ``-q*(1 + MMR) < 0`` for a short, since MMR < 1;
    with ``fee_rate`` the rate is MMR + fee_rate, still below 1)
    and MM is continuous, so there is at most one root. Each bracket's linear formula is tried;
    the root is the candidate whose notional ``q*LP`` lies inside that bracket's own range (the
    first bracket from 0, the last without an upper end). Two candidates agree when the root sits
    exactly on a floor. If Decimal rounding pushes a boundary root just outside both neighbours,
    the candidate with the smallest range violation is taken.
    """
    brackets = instrument.brackets
    first = brackets[0]
    side_q = side * q
    surplus_at_zero = balance - side_q * entry + first.maint_amount
    if side > 0 and surplus_at_zero >= ZERO:
        return None  # the long stays above maintenance all the way down to a price of 0
    if side < 0 and surplus_at_zero <= ZERO:
        raise ValueError(
            f"{instrument.symbol}: margin balance {balance} is below maintenance at every price "
            f"for a short of {q} at {entry}: the account is already liquidatable"
        )
    best: tuple[Decimal, Decimal] | None = None  # (range violation, candidate price)
    last = len(brackets) - 1
    for index, bracket in enumerate(brackets):
        denominator = q * bracket.maint_margin_rate - side_q
        if fee_rate:
            denominator += q * fee_rate
        if denominator == ZERO:
            continue
        price = (balance + bracket.maint_amount - side_q * entry) / denominator
        if price <= ZERO:
            continue
        violation = _range_violation(q * price, bracket, index == last)
        if violation == ZERO:
            return price
        if best is None or violation < best[0]:
            best = (violation, price)
    return None if best is None else best[1]


def _range_violation(notional: Decimal, bracket: Bracket, is_last: bool) -> Decimal:
    """How far ``notional`` lies outside ``[floor, cap]`` (0 inside; the last cap is open)."""
    if notional < bracket.notional_floor:
        return bracket.notional_floor - notional
    if not is_last and notional > bracket.notional_cap:
        return notional - bracket.notional_cap
    return ZERO


def _check_side(side: int) -> None:
    if side not in (1, -1):
        raise ValueError(f"side must be +1 (long) or -1 (short), got {side!r}")


def _check_price(name: str, price: Decimal, instrument: Instrument) -> None:
    if price <= ZERO:
        raise ValueError(f"{instrument.symbol}: {name} must be > 0, got {price}")
