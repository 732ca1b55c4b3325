"""Gross exposure cap: increases sized so the book stays within ``max_gross_leverage`` x equity.

The risk gate refuses an order that takes the book's gross notional over the cap, contract by
contract in the order the orders go out: with increases that together exceed it, the first
contracts would get their size and the last nothing, tick after tick. The increases are sized
within the cap instead, every one scaled by the same factor (rounded down to the step; a new
position below the venue's minimum order to none), and the decision says so. Like the gate,
the cap never forces a reduction: a book above it (prices moved) may only shrink.

Measured as the gate measures it, in the worst order the orders can go out: every contract at
the larger of what it holds and what it is going to, each at the higher of its mark and last
price, plus the positions held without a decision this tick (no market data, a hedge leg) at
their marks. The gate stays the backstop for what moves between the decision and the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from bot.domain.decision import Decision
from bot.domain.instrument import Instrument

ZERO = Decimal(0)
ONE = Decimal(1)
# Sized this fraction inside the cap: the gate measures at the moment of each order, on the
# equity left after the tick's earlier orders paid their fees and slippage.
GROSS_ROOM = Decimal("0.999")


def cap_to_gross(
    decisions: Sequence[Decision],
    held: Mapping[str, Decimal],
    prices: Mapping[str, Decimal],
    instruments: Mapping[str, Instrument],
    max_gross_notional: Decimal,
    fixed_notional: Decimal = ZERO,
) -> list[Decision]:
    """The decisions with their increases scaled so that the book's gross notional fits
    ``max_gross_notional``. ``held``: signed quantities held now (absent: flat); ``prices``:
    the price each decided contract is measured at; ``fixed_notional``: positions held without
    a decision."""
    now_total = ZERO  # what the decided contracts hold (and keep until their own turn)
    increases = ZERO  # what their increases add
    for d in decisions:
        price = prices[d.symbol]
        have = held.get(d.symbol, ZERO)
        now_total += abs(have) * price
        increases += _increase(have, d.target_qty) * price
    if increases == 0 or fixed_notional + now_total + increases <= max_gross_notional:
        return list(decisions)
    room = max_gross_notional * GROSS_ROOM - fixed_notional - now_total
    factor = room / increases if room > ZERO else ZERO
    if factor >= ONE:
        return list(decisions)
    prefix = (
        f"gross cap: held {fixed_notional + now_total:.2f} + increases {increases:.2f} > "
        f"{max_gross_notional:.2f}: increase scaled by {factor:.4f} -> size "
    )
    out = []
    for d in decisions:
        have = held.get(d.symbol, ZERO)
        more = _increase(have, d.target_qty)
        if more == 0:
            out.append(d)
            continue
        base = abs(have) if have * d.target_qty > 0 else ZERO  # a flip opens from flat
        inst = instruments[d.symbol]
        scaled = inst.floor_qty(more * factor)
        after = ""
        if base == 0 and 0 < scaled < inst.min_qty:
            # A position opened below the venue's minimum order is none: no order opens it.
            after = f" ({scaled} is below the exchange's minimum order {inst.min_qty})"
            scaled = ZERO
        qty = base + scaled
        out.append(d.resized(qty, qty / abs(d.target_qty), prefix, after))
    return out


def _increase(have: Decimal, target: Decimal) -> Decimal:
    """How much ``target`` adds beyond ``have`` on its own side (all of it after a flip)."""
    if target == 0:
        return ZERO
    if have * target > 0:
        extra = abs(target) - abs(have)
        return extra if extra > ZERO else ZERO
    return abs(target)
