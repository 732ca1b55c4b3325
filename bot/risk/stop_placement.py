"""Where a stop-loss may rest: strictly between the mark and the liquidation price, placeable.

The policy proposes a stop from volatility. Before any stop goes to the exchange, and before any
size is traded, this module enforces, in this order:

1. **Before liquidation.** The stop lies strictly between the mark and the liquidation price,
   at least ``buffer`` (price units: the policy's ``liquidation.buffer_vol_units`` daily
   volatility units) inside it. A proposed stop beyond that bound is moved toward the mark:
   a tighter stop is always safer than one that can never fire.
2. **Valid for the venue.** Positive, on the tick grid (rounded toward the mark, so it fires no
   later than planned), within the venue's price limits (minimum/maximum price and the percent
   band around the mark where the venue has one), and at least one tick away from the mark
   (a trigger at or through the mark fires at once and is refused: Binance -2021).
3. **Else no position.** When no price satisfies both, there is no stop at this size: the size
   is cut (:func:`fit_size`) until a stop exists, to zero if needed.

Pure functions of Decimal inputs; the engine calls them in simulation, paper and live alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from bot.domain.instrument import Instrument

ZERO = Decimal(0)
INFINITY = Decimal("Infinity")
# Each cut keeps this fraction of the size; a few dozen steps reach any exchange minimum.
CUT = Decimal("0.8")
MAX_CUTS = 60

LiquidationOf = Callable[[Decimal], Decimal | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class StopRange:
    """The closed range of valid trigger prices on the tick grid (``nearest`` to the mark,
    ``farthest`` from it). Empty when ``nearest`` is beyond ``farthest``."""

    sign: int  # +1 long (stop below the mark), -1 short (stop above)
    nearest: Decimal
    farthest: Decimal

    @property
    def empty(self) -> bool:
        return (self.nearest < self.farthest) if self.sign > 0 else (self.nearest > self.farthest)

    def contains(self, price: Decimal) -> bool:
        if self.empty:
            return False
        if self.sign > 0:
            return self.farthest <= price <= self.nearest
        return self.nearest <= price <= self.farthest


def stop_range(
    inst: Instrument, *, sign: int, mark: Decimal, liquidation: Decimal | None, buffer: Decimal
) -> StopRange:
    """Valid stop triggers for a position of side ``sign`` at ``mark`` liquidating at
    ``liquidation`` (``None``: the position cannot be liquidated)."""
    nearest, farthest = _range_ends(inst, sign, mark, liquidation, buffer)
    return StopRange(sign=sign, nearest=nearest, farthest=farthest)


def _range_ends(
    inst: Instrument, sign: int, mark: Decimal, liquidation: Decimal | None, buffer: Decimal
) -> tuple[Decimal, Decimal]:
    """``(nearest, farthest)`` of :func:`stop_range`, without building the range object."""
    if sign != 1 and sign != -1:
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    if mark <= ZERO:
        return ZERO, inst.tick_size * sign  # empty
    if buffer < ZERO:  # max(buffer, 0), as a comparison
        buffer = ZERO
    if sign > 0:
        return _long_range(inst, mark, liquidation, buffer)
    return _short_range(inst, mark, liquidation, buffer)


def _long_range(
    inst: Instrument, mark: Decimal, liquidation: Decimal | None, buffer: Decimal
) -> tuple[Decimal, Decimal]:
    tick = inst.tick_size
    nearest = inst.ceil_price(mark) - tick  # highest grid price strictly below the mark
    if inst.max_price is not None:
        nearest = min(nearest, inst.floor_price(inst.max_price))
    # The highest of the lower bounds: tick, liquidation + buffer, the venue's minimum price and
    # its percent band, in this order; the first of equal values wins, as with max().
    low = tick
    if liquidation is not None:
        bound = liquidation + buffer
        if bound > low:
            low = bound
    if inst.min_price is not None and inst.min_price > low:
        low = inst.min_price
    if inst.percent_down is not None:
        bound = mark * inst.percent_down
        if bound > low:
            low = bound
    farthest = inst.ceil_price(low)
    if liquidation is not None and farthest <= liquidation:
        farthest = inst.floor_price(liquidation) + tick  # strictly above liquidation
    return nearest, farthest


def _short_range(
    inst: Instrument, mark: Decimal, liquidation: Decimal | None, buffer: Decimal
) -> tuple[Decimal, Decimal]:
    tick = inst.tick_size
    nearest = inst.floor_price(mark) + tick  # lowest grid price strictly above the mark
    if inst.min_price is not None:
        nearest = max(nearest, inst.ceil_price(inst.min_price))
    caps: list[Decimal] = []
    if liquidation is not None:
        caps.append(liquidation - buffer)
    if inst.max_price is not None:
        caps.append(inst.max_price)
    if inst.percent_up is not None:
        caps.append(mark * inst.percent_up)
    if not caps:  # a short without a liquidation price or a venue cap: no upper bound
        return nearest, INFINITY
    farthest = inst.floor_price(min(caps))
    if liquidation is not None and farthest >= liquidation:
        farthest = inst.ceil_price(liquidation) - tick  # strictly below liquidation
    return nearest, farthest


def placeable_stop(
    inst: Instrument,
    *,
    sign: int,
    mark: Decimal,
    wanted: Decimal | None,
    liquidation: Decimal | None,
    buffer: Decimal,
) -> Decimal | None:
    """The stop to place: ``wanted`` moved into the valid range (toward the mark when it lies
    beyond the liquidation bound, one tick off the mark when it lies through it), or ``None``
    when the range is empty. ``wanted`` ``None`` means "as far as allowed"."""
    nearest, farthest = _range_ends(inst, sign, mark, liquidation, buffer)
    # StopRange.empty, and the clamps below, as comparisons (the same values as min()/max()).
    if sign > 0:
        if nearest < farthest:
            return None
    elif nearest > farthest:
        return None
    if wanted is None:
        return farthest if farthest.is_finite() else None
    stop = inst.stop_price(wanted, sign)
    if sign > 0:
        if farthest > stop:  # max(stop, farthest)
            stop = farthest
        return nearest if nearest < stop else stop  # min(.., nearest)
    if farthest < stop:  # min(stop, farthest)
        stop = farthest
    return nearest if nearest > stop else stop  # max(.., nearest)


def is_valid_stop(
    inst: Instrument, *, sign: int, mark: Decimal, trigger: Decimal, liquidation: Decimal | None
) -> bool:
    """Whether a resting trigger protects a position: positive, on the grid, strictly between
    the mark and the liquidation price (no buffer: a stop that can fire before liquidation)."""
    if trigger <= ZERO or trigger % inst.tick_size != 0:
        return False
    if (trigger - mark) * sign >= 0:
        return False  # at or through the mark: it has fired or is about to
    return liquidation is None or (trigger - liquidation) * sign > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class FittedSize:
    qty: Decimal  # absolute size, on the step grid; 0 = no size has a placeable stop
    stop: Decimal | None
    cut: bool  # the size was cut to find a stop


def fit_size(
    inst: Instrument,
    *,
    qty: Decimal,
    sign: int,
    mark: Decimal,
    wanted: Decimal | None,
    buffer: Decimal,
    liquidation_of: LiquidationOf,
) -> FittedSize:
    """The largest size not above ``qty`` (absolute) whose position has a placeable stop.

    ``liquidation_of(size)`` is the liquidation price the position would have at that size
    (``None``: it cannot be liquidated). The size is cut by :data:`CUT` per step on the step
    grid; below the venue's minimum it is zero.
    """
    size = inst.floor_qty(abs(qty))
    cut = False
    for _ in range(MAX_CUTS):
        if size <= ZERO or size < inst.min_qty:
            break
        stop = placeable_stop(
            inst,
            sign=sign,
            mark=mark,
            wanted=wanted,
            liquidation=liquidation_of(size),
            buffer=buffer,
        )
        if stop is not None:
            return FittedSize(qty=size, stop=stop, cut=cut)
        cut = True
        smaller = inst.floor_qty(size * CUT)
        size = smaller if smaller < size else size - inst.step_size
    return FittedSize(qty=ZERO, stop=None, cut=True)
