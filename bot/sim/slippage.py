"""What a fill costs beyond its reference price, in the simulated exchange.

Two models (``[simulation] slippage_model``):

* ``fixed``: every market order, triggered stop and liquidation pays ``slippage_bps``.
* ``range_impact``: a floor (``slippage_bps``, about half the typical spread) plus, for an order
  that fills inside a moving candle (a triggered stop, a liquidation), ``range_fraction`` of that
  candle's high-low range, plus a square-root impact term
  ``impact x sigma x sqrt(Q / V)`` with ``sigma`` the candle's range as a fraction of its open,
  ``Q`` the order's quantity and ``V`` the candle's traded volume.

The impact term is the square-root law of market impact, impact ~ Y sigma_T sqrt(Q / V_T) with Y
of order 1 (Toth et al. 2011, "Anomalous price impact and the critical nature of liquidity in
financial markets"; Bouchaud, Bonart, Donier & Gould 2018, "Trades, Quotes and Prices", ch. 12).
It is written here at the scale of one candle: sigma_T grows as sqrt(T) and V_T as T, so
sigma_T / sqrt(V_T) does not depend on the candle length and the daily form and the candle form
agree. Gaps fill at the open (the exchange's gap rule) and pay the slippage on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from bot.sim.book import PRICE_PLACES

ZERO = Decimal(0)
BPS = Decimal("0.0001")
# No fill is modelled further than this from its reference (a price must stay positive).
MAX_SLIPPAGE = Decimal("0.5")
PLACES = Decimal("1e-8")


@dataclass(frozen=True, slots=True)
class SlippageModel:
    floor: Decimal = ZERO  # fraction of price
    range_fraction: Decimal = ZERO  # of the candle's range, for fills inside a moving candle
    impact: Decimal = ZERO  # Y of the square-root law

    @classmethod
    def fixed(cls, bps: Decimal) -> SlippageModel:
        return cls(floor=bps * BPS)

    @property
    def data_driven(self) -> bool:
        return self.range_fraction > 0 or self.impact > 0

    def fraction(
        self, qty: Decimal, candle_range: Decimal | None, volume: Decimal | None, inside: bool
    ) -> Decimal:
        """Slippage as a fraction of the reference price. ``candle_range``: (high - low) / open
        of the candle the fill belongs to (``None``: unknown, floor only); ``inside``: the order
        fills inside that candle's move (a triggered stop or a liquidation)."""
        s = self.floor
        if candle_range is not None and candle_range > 0:
            if inside:
                s += self.range_fraction * candle_range
            s += self._impact_term(qty, candle_range, volume)
        return _bounded(s)

    def impact_fraction(
        self, qty: Decimal, candle_range: Decimal | None, volume: Decimal | None
    ) -> Decimal:
        """The part of :meth:`fraction` the order's own size adds (the square-root term): the
        part that may take a fill past the candle's extreme (see :func:`fill_price`)."""
        if candle_range is None or candle_range <= 0:
            return ZERO
        return _bounded(self._impact_term(qty, candle_range, volume))

    def _impact_term(self, qty: Decimal, candle_range: Decimal, volume: Decimal | None) -> Decimal:
        """``impact x sigma x sqrt(Q / V)`` (0 without an impact factor, volume or size)."""
        if self.impact <= 0 or volume is None or volume <= 0 or qty <= 0:
            return ZERO
        return self.impact * candle_range * (abs(qty) / volume).sqrt()


def _bounded(fraction: Decimal) -> Decimal:
    # Bounded digits (a square root has 28): prices built from it are stored exactly.
    return min(fraction, MAX_SLIPPAGE).quantize(PLACES, rounding=ROUND_CEILING)


def within_traded(
    price: Decimal, reference: Decimal, traded: tuple[Decimal, Decimal] | None
) -> Decimal:
    """``price`` (``reference`` moved by slippage) kept within ``traded``, the (low, high) the
    last price traded at in the candle the fill belongs to: the fill is itself a trade of that
    candle, so slippage never takes it past the candle's extreme (a stop triggered a tick
    above a crash candle's low fills at that low, not below it). A ``reference`` already
    outside the range (a mark-triggered stop filled no better than its trigger, below the
    last price's low) is kept: slippage then adds nothing. ``None``: no bound known."""
    if traded is None:
        return price
    low, high = traded
    if price < low:
        return min(reference, low)
    if price > high:
        return max(reference, high)
    return price


def fill_price(
    reference: Decimal,
    sign: int,
    slip: Decimal,
    impact: Decimal,
    traded: tuple[Decimal, Decimal] | None,
) -> Decimal:
    """Where an order of side ``sign`` (+1 buys) fills: ``reference`` moved against it by
    ``slip``. The part that stands for the candle's own move and spread (``slip - impact``)
    stays within ``traded`` (:func:`within_traded`); the order's own impact (``impact``, part of
    ``slip``) then applies beyond it: an order large against the candle's volume would itself
    have printed a new extreme, so a large book is not filled at the low a small one could get.
    ``traded`` None (no bound known): the whole slippage at once."""
    if traded is None or not impact:
        return within_traded(_against(reference * (1 + slip * sign), sign), reference, traded)
    moved = within_traded(
        _against(reference * (1 + (slip - impact) * sign), sign), reference, traded
    )
    return _against(moved * (1 + impact * sign), sign)


def _against(price: Decimal, sign: int) -> Decimal:
    """A fill price to the book's price digits, rounded against the order (a buy up, a sell
    down): the products above can carry more digits than a state database stores exactly
    (NUMERIC(38, 18)), and the fee computed from it more still."""
    return price.quantize(PRICE_PLACES, rounding=ROUND_CEILING if sign > 0 else ROUND_FLOOR)
