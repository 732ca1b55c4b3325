"""Contract specification: trading filters, fees and tiered leverage brackets."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

ZERO = Decimal(0)


class MarginModel(StrEnum):
    """Whose liquidation arithmetic a contract follows (see :mod:`bot.domain.margin`).

    The venues share the tier table's shape (maintenance margin = notional x rate - deduction)
    but not the liquidation formula: Binance USD-M takes the maintenance margin at the
    liquidation price, Bybit documents it on the position value at entry and, in its Unified
    Trading Account, adds the estimated fee to close the position.
    """

    BINANCE_USDM = "binance-usdm"
    BYBIT_UTA = "bybit-uta"

    @classmethod
    def for_exchange(cls, exchange: str) -> MarginModel:
        """The model of a ccxt exchange id: Bybit's for ``bybit``, Binance's otherwise (the
        formula every contract used before venues were told apart)."""
        return cls.BYBIT_UTA if exchange == "bybit" else cls.BINANCE_USDM


@dataclass(frozen=True, slots=True)
class Bracket:
    """One notional tier of an exchange's leverage bracket table (Binance USD-M naming).

    ``maint_amount`` is Binance's ``cum``: the maintenance amount that makes the tiered
    maintenance margin continuous, ``mm = notional * maint_margin_rate - maint_amount``.
    """

    notional_floor: Decimal  # quote currency, inclusive
    notional_cap: Decimal  # quote currency, exclusive
    max_leverage: Decimal
    maint_margin_rate: Decimal  # fraction, not percent
    maint_amount: Decimal  # quote currency

    def contains(self, notional: Decimal) -> bool:
        return self.notional_floor <= notional < self.notional_cap


@dataclass(frozen=True, slots=True)
class Instrument:
    """A linear perpetual contract as the exchange defines it.

    Quantities are in the base asset (contract size 1), prices and notionals in the quote asset.
    """

    symbol: str  # ccxt unified symbol, e.g. "BTC/USDT:USDT"
    base: str
    quote: str
    tick_size: Decimal  # price increment
    step_size: Decimal  # quantity increment
    min_qty: Decimal
    min_notional: Decimal  # quote currency
    brackets: tuple[Bracket, ...]
    maker_fee: Decimal  # fraction of notional
    taker_fee: Decimal  # fraction of notional
    liquidation_fee: Decimal  # fraction of notional charged when liquidated
    # Price filters (Binance PRICE_FILTER / PERCENT_PRICE, Bybit priceFilter). ``None``: the
    # venue states none; a price must still be positive and on the tick grid.
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    percent_down: Decimal | None = None  # lowest price as a fraction of the mark (e.g. 0.95)
    percent_up: Decimal | None = None  # highest price as a fraction of the mark (e.g. 1.05)
    # The largest quantity one market or stop-market order may carry (Binance MARKET_LOT_SIZE
    # maxQty, refused with -4005; Bybit lotSizeFilter.maxMktOrderQty). ``None``: no limit known.
    # Reduce-only orders are bound by it too, so a larger position cannot be closed in one order.
    max_order_qty: Decimal | None = None
    # The largest position the venue allows, in quote (Binance: the last leverage bracket's
    # notionalCap; an order beyond it is refused with -2027 at any leverage). ``None``: unknown,
    # e.g. a bracket table known only up to some tier.
    max_position_notional: Decimal | None = None
    # Whose liquidation formula applies; set by the loader from the venue (bot.instruments,
    # bot.exchange.mapping). Binance's by default, so a contract built without it keeps the
    # figures it always had.
    margin_model: MarginModel = MarginModel.BINANCE_USDM

    def __post_init__(self) -> None:
        if not self.brackets:
            raise ValueError(f"{self.symbol}: no leverage brackets")
        for lower, upper in zip(self.brackets, self.brackets[1:], strict=False):
            if lower.notional_cap != upper.notional_floor:
                raise ValueError(f"{self.symbol}: leverage brackets are not contiguous")
        for name in ("tick_size", "step_size"):
            if getattr(self, name) <= ZERO:
                raise ValueError(f"{self.symbol}: {name} must be > 0")
        cap = self.max_position_notional
        if cap is not None and cap <= ZERO:
            raise ValueError(f"{self.symbol}: max_position_notional must be > 0, got {cap}")
        most = self.max_order_qty
        if most is not None and (most < self.min_qty or most < self.step_size):
            raise ValueError(
                f"{self.symbol}: max_order_qty {most} is below the minimum order "
                f"({self.min_qty}, step {self.step_size})"
            )

    @property
    def max_leverage(self) -> Decimal:
        """Highest leverage the exchange allows (the first, smallest bracket)."""
        return self.brackets[0].max_leverage

    def bracket_for(self, notional: Decimal) -> Bracket:
        """Return the bracket whose notional range contains ``abs(notional)``."""
        n = abs(notional)
        # Bracket.contains inlined: this runs several times per contract and tick.
        for bracket in self.brackets:
            if bracket.notional_floor <= n < bracket.notional_cap:
                return bracket
        return self.brackets[-1]

    def max_leverage_for(self, notional: Decimal) -> Decimal:
        """Highest leverage allowed for a position of this notional."""
        return self.bracket_for(notional).max_leverage

    def notional_limit_for(self, leverage: Decimal) -> Decimal | None:
        """The notional (exclusive) from which a leverage setting of ``leverage`` is above the
        bracket maximum: the floor of the first bracket that does not allow it (0 when none
        does); ``None`` when every bracket allows it. Below it, every notional allows it."""
        for bracket in self.brackets:
            if bracket.max_leverage < leverage:
                return bracket.notional_floor
        return None

    def floor_qty(self, qty: Decimal) -> Decimal:
        """Round a non-negative quantity down to the step (never trade more than intended)."""
        return (qty / self.step_size).to_integral_value(rounding=ROUND_FLOOR) * self.step_size

    def ceil_qty(self, qty: Decimal) -> Decimal:
        return (qty / self.step_size).to_integral_value(rounding=ROUND_CEILING) * self.step_size

    def orderable(self, qty: Decimal) -> bool:
        """Whether one order of ``qty`` (absolute) passes the quantity filters: on the step grid
        and at least the minimum. A position opened at a finer step (by hand, or before the
        venue made its step coarser) or below a raised minimum is not: no order sized to it
        is accepted (Binance -1111/-4023/-4004, Bybit 10001)."""
        return qty >= self.min_qty and qty % self.step_size == 0

    def orderable_part(self, qty: Decimal) -> Decimal:
        """The largest part of ``qty`` (absolute) one order can trade: ``qty`` rounded down to
        the step, or 0 when that is below the minimum quantity."""
        part = self.floor_qty(qty)
        return part if part >= self.min_qty else Decimal(0)

    def reduction(self, held: Decimal, cut: Decimal) -> Decimal:
        """What reduce-only orders trade to cut at least ``cut`` off a position of absolute
        ``held``, rounded toward less exposure into orders the venue accepts: up to the step,
        at least the minimum quantity, and all the orders can trade of the position when what
        would remain is below the minimum (a sliver no order could close or, without a
        close-position stop, protect). Never more than the orders can trade of it (0 below the
        minimum). The minimum quantity binds reduce-only orders too: Binance's LOT_SIZE
        ``minQty`` does, only MIN_NOTIONAL exempts them (-4164 "unless you choose reduce only";
        ``shared/notes/exchange-facts.md`` §4.4); Bybit's ``minOrderQty`` is not verified either
        way, so it is assumed to bind them too (the harsher assumption)."""
        most = held if self.orderable(held) else self.orderable_part(held)
        if cut <= ZERO or most == ZERO:
            return ZERO
        amount = self.ceil_qty(cut)
        if amount < self.min_qty:
            amount = self.min_qty
        if amount > most or held - amount < self.min_qty:
            return most
        return amount

    @property
    def largest_order(self) -> Decimal | None:
        """``max_order_qty`` on the step grid (rounded down): the most one order can trade."""
        most = self.max_order_qty
        return None if most is None else self.floor_qty(most)

    def order_sizes(self, qty: Decimal) -> list[Decimal]:
        """``qty`` (on the step grid, > 0) as the fewest orders the venue accepts, near equal.

        One order when it fits ``max_order_qty``. Otherwise ``n`` orders of ``qty / n`` on the
        step grid (they differ by one step at most and sum to ``qty``): an even split never
        leaves a remainder below the minimum quantity, as "full orders plus the rest" could.
        """
        most = self.largest_order
        if most is None or qty <= most:
            return [qty]
        steps = int(qty / self.step_size)
        count = -(-steps // int(most / self.step_size))  # ceiling division, on ints
        base, extra = divmod(steps, count)
        return [(base + (1 if k < extra else 0)) * self.step_size for k in range(count)]

    def floor_price(self, price: Decimal) -> Decimal:
        return self._on_grid(price, ROUND_FLOOR)

    def ceil_price(self, price: Decimal) -> Decimal:
        return self._on_grid(price, ROUND_CEILING)

    def _on_grid(self, price: Decimal, rounding: str) -> Decimal:
        """``price`` rounded to a multiple of the tick, in the direction ``rounding``."""
        tick = self.tick_size
        return (price / tick).to_integral_value(rounding=rounding) * tick

    def fill_on_tick(self, price: Decimal, side_sign: int, limit: Decimal | None = None) -> Decimal:
        """Where a fill modelled at ``price`` trades on the venue, whose trades are all on the
        tick: rounded against the trader, a buy (``side_sign`` > 0) up to the next tick and a
        sell down to the one below, so no fill is better for the trader than the model's price
        (on a coarse tick, e.g. 0.01 quoted to 0.00001, a tick is 10 bps).

        ``limit``: a limit order's price (on the tick, as the venue's price filter demands); the
        fill never goes beyond it (a buy limit at 100.05 fills at 100.05, not at 100.1). A sell
        priced below one tick fills at one tick, the lowest price the venue quotes.

        Exact: Decimal's divmod gives the whole number of ticks and the remainder exactly, where
        a quotient would be rounded to 28 digits (and a sell just under a tick boundary could
        then round up)."""
        if price <= 0:
            raise ValueError(f"{self.symbol}: a fill price must be > 0, got {price}")
        tick = self.tick_size
        steps, rest = divmod(price, tick)
        if rest and side_sign > 0:
            steps += 1
        fill = steps * tick if steps > 0 else tick
        if limit is None:
            return fill
        return min(fill, limit) if side_sign > 0 else max(fill, limit)

    def stop_price(self, price: Decimal, position_sign: int) -> Decimal:
        """Round a stop-loss trigger toward the mark so it fires no later than planned.

        A long's stop sits below the mark: round it up. A short's sits above: round it down.
        """
        return self._on_grid(price, ROUND_CEILING if position_sign > 0 else ROUND_FLOOR)

    def liquidation_on_grid(self, price: Decimal, position_sign: int) -> Decimal:
        """A liquidation price on the tick grid, rounded toward the mark (up for a long, whose
        liquidation lies below it; down for a short), as the venue reports a held position's:
        on a coarse tick the nearest price could promise room the position does not have."""
        return self._on_grid(price, ROUND_CEILING if position_sign > 0 else ROUND_FLOOR)

    def round_trip(self, exit_slippage: Decimal) -> Decimal:
        """Fraction of the entry price a position closed by a triggered market order (a
        take-profit-market) must gain to break even: the taker fee of the market entry and of
        the exit, and ``exit_slippage`` (a fraction of price) on the exit. The entry's own
        slippage is in its fill price, from which a take-profit is measured. The exit's fee is
        charged on the exit's notional, a fraction ``distance`` more or less than the entry's:
        neglected (at a distance of 0.2 %, 0.05 % of the round trip)."""
        return 2 * self.taker_fee + exit_slippage

    def take_profit_price(self, price: Decimal, position_sign: int) -> Decimal:
        """Round a take-profit trigger toward the mark (the conservative side for the target)."""
        return self._on_grid(price, ROUND_FLOOR if position_sign > 0 else ROUND_CEILING)
