"""Display formatting of exact numbers: prices to the contract's tick, quantities to its step,
money to cents, fractions as percentages. Display only: the domain never rounds through here
(:func:`unsigned`, exact, is shared with it)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

DASH = "-"


def unsigned(x: Decimal) -> Decimal:
    """``x``, a zero without its sign (exact: any other value as it is). Decimal keeps the sign
    of a zero product (a short closed at its entry price realises ``1 * 0 * -1 = -0``), and a
    file written from it carries "-0.0000000000", a different value to a strict reader, a
    spreadsheet's sum or a diff against another run."""
    return abs(x) if x.is_zero() else x


def places_of(increment: Decimal) -> int:
    """Decimal places of an exchange increment: 0.10 -> 1, 0.001 -> 3, 5 -> 0."""
    exponent = increment.normalize().as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"increment {increment} is not a finite number")
    return max(0, -exponent)


def fixed(value: Decimal | None, places: int, *, grouping: bool = False) -> str:
    """``value`` with exactly ``places`` decimals (half-even), ``-`` for None."""
    if value is None:
        return DASH
    if not value.is_finite():
        return str(value)
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    return f"{q:,.{places}f}" if grouping else f"{q:.{places}f}"


def price(value: Decimal | None, tick: Decimal | None, *, grouping: bool = False) -> str:
    """A price to the contract's tick precision (8 places when the tick is unknown)."""
    return fixed(value, places_of(tick) if tick is not None else 8, grouping=grouping)


def qty(value: Decimal | None, step: Decimal | None) -> str:
    """A quantity to the contract's step precision (8 places when the step is unknown)."""
    return fixed(value, places_of(step) if step is not None else 8)


def held_qty(value: Decimal | None, step: Decimal | None) -> str:
    """A position's size as :func:`qty`, except that a size finer than the step (opened at a
    finer step, or the part of it no order can carry) is shown to its own last digit, never
    rounded onto the step: 0.123 at the step 0.01 is not "0.12"."""
    if step is not None and value is not None and value.is_finite() and value % step != 0:
        return fixed(value, max(places_of(step), places_of(value)))
    return qty(value, step)


def money(value: Decimal | None, *, grouping: bool = False) -> str:
    return fixed(value, 2, grouping=grouping)


def percent(fraction: Decimal | None, places: int = 2) -> str:
    if fraction is None:
        return DASH
    if not fraction.is_finite():
        return str(fraction)
    return fixed(fraction * 100, places) + " %"
