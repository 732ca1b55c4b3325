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
4. **No increase on a stop moved in.** Where 1. or 2. had to put the stop nearer the mark than
   the policy's, no exposure is added on it (:func:`fit_size`'s ``held``): the loss at the stop,
   which sizes the position, would be understated by exactly that move. The size is the
   largest whose stop rests where the policy put it, and not below what is held.

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
    # A size above ``fit_size``'s ``held`` refused, the first (the size asked for, unless no
    # stop at all rested there): that size and the stop it would have needed, nearer the mark
    # than the policy's (moved_in). None: none was refused.
    refused: tuple[Decimal, Decimal] | None = None


def moved_in(
    inst: Instrument, *, sign: int, mark: Decimal, stop: Decimal, wanted: Decimal | None
) -> bool:
    """Whether the placeable ``stop`` lies nearer the mark than the policy's distance: moved
    toward the mark from ``wanted`` (the liquidation bound, the venue's percent band) beyond
    the tick grid's rounding, or ``wanted`` lies through the mark by more than a tick (no
    distance the policy keeps: a trigger the venue would fire at once, read from an answer
    that contradicts the mark; the policy's own stop is at most a tick through it, rounded
    toward the mark, and a stop placed off it lies farther, not nearer). A long's stop wanted
    below the lowest price the venue quotes (a short's above the highest) is held there: the
    price cannot move past it, so a loss measured at that bound is not understated."""
    if wanted is None:
        return False
    if (wanted - mark) * sign > inst.tick_size:
        return True
    if stop == wanted:
        return False
    if sign > 0:
        lowest = inst.tick_size
        if inst.min_price is not None and inst.min_price > lowest:
            lowest = inst.min_price
        if wanted < lowest:
            wanted = lowest
    elif inst.max_price is not None and wanted > inst.max_price:
        wanted = inst.max_price
    return (stop - inst.stop_price(wanted, sign)) * sign > 0


def fit_size(
    inst: Instrument,
    *,
    qty: Decimal,
    sign: int,
    mark: Decimal,
    wanted: Decimal | None,
    buffer: Decimal,
    liquidation_of: LiquidationOf,
    held: Decimal | None = None,
) -> FittedSize:
    """The largest size not above ``qty`` (absolute) whose position has a placeable stop.

    ``liquidation_of(size)`` is the liquidation price the position would have at that size
    (``None``: it cannot be liquidated). The size is cut by :data:`CUT` per step on the step
    grid; below the venue's minimum it is zero.

    ``held`` (absolute; 0 for a contract flat or held on the other side) bars any size above
    it whose stop would have to lie nearer the mark than the policy's (:func:`moved_in`): the
    size is the largest (on the step grid) whose stop rests where the policy put it, and not
    below ``held`` (there, the held position's stop, wherever it must be: a reduction and the
    re-protection still go); ``refused`` says what was refused. The loss budget measures the
    loss at the stop: at a stop forced next to the mark (a liquidation price computed from a
    leverage setting read as 30 instead of 3, a stop the trailing rule took from a garbled
    reading) it measured almost none, and the position grew. ``None``: no such bar (the size
    alone is fitted).
    """
    size = inst.floor_qty(abs(qty))
    cut = False
    refused: tuple[Decimal, Decimal] | None = None
    over = size
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
            if (
                held is None
                or size <= held
                or stop == wanted  # (the usual case, one comparison: a placeable stop is never
                # through the mark, so neither is a wanted one it equals)
                or not moved_in(inst, sign=sign, mark=mark, stop=stop, wanted=wanted)
            ):
                if refused is not None:
                    bar = _Bar(inst, sign, mark, wanted, buffer, liquidation_of, held)
                    size, stop = bar.largest(size, stop, over)
                return FittedSize(qty=size, stop=stop, cut=cut, refused=refused)
            if refused is None:
                refused = (size, stop)
            over = size  # the smallest size refused so far
        cut = True
        smaller = inst.floor_qty(size * CUT)
        smaller = smaller if smaller < size else size - inst.step_size
        if refused is not None and held is not None and smaller < held < size:
            # Cut for a stop moved in: not past what is held (that would be a reduction, which
            # only a held position without any stop calls for).
            smaller = inst.floor_qty(held)
        size = smaller
    return FittedSize(qty=ZERO, stop=None, cut=True, refused=refused)


@dataclass(frozen=True, slots=True)
class _Bar:
    """:func:`fit_size`'s search, once a size was refused for a stop moved in (rare: only
    then, so the usual tick pays nothing for it)."""

    inst: Instrument
    sign: int
    mark: Decimal
    wanted: Decimal | None
    buffer: Decimal
    liquidation_of: LiquidationOf
    held: Decimal | None

    def stop_at(self, size: Decimal) -> Decimal | None:
        """The stop a position of ``size`` may have: placeable and, above what is held, where
        the policy put it (``None``: none)."""
        stop = placeable_stop(
            self.inst,
            sign=self.sign,
            mark=self.mark,
            wanted=self.wanted,
            liquidation=self.liquidation_of(size),
            buffer=self.buffer,
        )
        if stop is None or self.held is None or size <= self.held:
            return stop
        moved = moved_in(self.inst, sign=self.sign, mark=self.mark, stop=stop, wanted=self.wanted)
        return None if moved else stop

    def largest(self, size: Decimal, stop: Decimal, over: Decimal) -> tuple[Decimal, Decimal]:
        """The largest size on the step grid from ``size`` (which has ``stop``) up to below
        ``over`` (refused) that has a stop, by halving the gap: the cuts of :data:`CUT` that
        found ``size`` can land a fifth below it (a hedge leg sized a fifth short for a stop
        the liquidation price moved 0.6 % in)."""
        step = self.inst.step_size
        while over - size > step:
            mid = self.inst.floor_qty((size + over) / 2)
            if mid <= size:
                break
            found = self.stop_at(mid)
            if found is None:
                over = mid
            else:
                size, stop = mid, found
        return size, stop
