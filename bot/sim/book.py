"""Position and wallet accounting of the simulated exchange (one-way mode, linear USDT perps).

Wallet balance moves only with realised PnL, fees, funding and liquidations. An isolated position
holds ``isolated_margin`` of the wallet (initial margin at its leverage setting, minus funding it
paid); a cross position is backed by the whole wallet. Equity = wallet + unrealised PnL.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from bot.domain.enums import MarginMode
from bot.domain.instrument import Instrument
from bot.domain.margin import (
    cross_maintenance,
    initial_margin,
    liquidation_price_cross_any_wallet,
    liquidation_price_isolated,
)
from bot.domain.position import Position
from bot.numbers import unsigned

ZERO = Decimal(0)
# Exchanges report averages and margins with a bounded number of digits; so do we (a repeating
# decimal from a division would otherwise carry 28 digits into the store).
PRICE_PLACES = Decimal("1e-10")
MARGIN_PLACES = Decimal("1e-10")


def _avg(x: Decimal) -> Decimal:
    return x.quantize(PRICE_PLACES, rounding=ROUND_HALF_EVEN)


def _margin(x: Decimal) -> Decimal:
    return x.quantize(MARGIN_PLACES, rounding=ROUND_CEILING)


def charged(amount: Decimal) -> Decimal:
    """An amount the trader is charged (a fee, a funding payment; < 0: received), to bounded
    digits, rounded against the trader (up): the venue reports them to a few decimals, and a
    product of exact decimals (a mark price carries 8) can hold more than a store keeps
    exactly (NUMERIC(38, 18)). Never a negative zero: a short's funding at a zero rate (a hedge
    leg) rounds up to -0E-10, which the journal and events.csv would carry as "-0.0000000000"."""
    return unsigned(amount.quantize(MARGIN_PLACES, rounding=ROUND_CEILING))


def fee_of(qty: Decimal, price: Decimal, rate: Decimal) -> Decimal:
    """The fee of a fill (:func:`charged`)."""
    return charged(abs(qty) * price * rate)


@dataclass(slots=True)
class SimPosition:
    qty: Decimal = ZERO
    entry_price: Decimal = ZERO
    isolated_margin: Decimal = ZERO

    @property
    def sign(self) -> int:
        return (self.qty > 0) - (self.qty < 0)


@dataclass(frozen=True, slots=True)
class TradeResult:
    realized_pnl: Decimal
    fee: Decimal
    # The loss of a closing fill beyond what backs the position (an isolated position's margin,
    # a cross account's wallet once nothing else is open), taken by the insurance fund (>= 0).
    shortfall: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class AccountLiquidation:
    """A cross account closed as one: per-contract PnL and fee, and what the wallet could not pay.

    ``shortfall`` is the loss beyond the wallet, taken by the insurance fund (>= 0).
    """

    realized: dict[str, Decimal]
    fees: dict[str, Decimal]
    wallet_before: Decimal
    wallet_after: Decimal
    shortfall: Decimal


class Book:
    """Wallet, positions and leverage settings. No prices or orders: those are the exchange's."""

    def __init__(
        self,
        instruments: dict[str, Instrument],
        *,
        starting_balance: Decimal,
        margin_mode: MarginMode,
    ) -> None:
        self.instruments = instruments
        self.wallet = starting_balance
        self.margin_mode = margin_mode
        self.positions: dict[str, SimPosition] = {s: SimPosition() for s in instruments}
        self.leverage: dict[str, Decimal] = {s: Decimal(1) for s in instruments}
        # The last isolated liquidation price per contract and the very objects it was computed
        # from (instrument, qty, entry, isolated margin): a position that did not change since
        # is not solved again (trades and funding replace these values, never mutate them).
        self._isolated_liq: dict[
            str, tuple[Instrument, Decimal, Decimal, Decimal, Decimal | None]
        ] = {}

    # -- queries -------------------------------------------------------------------------------

    def unrealized(self, marks: dict[str, Decimal]) -> Decimal:
        total = ZERO
        for sym, pos in self.positions.items():
            if pos.qty != 0:
                total += pos.qty * (marks[sym] - pos.entry_price)
        return total

    def equity(self, marks: dict[str, Decimal]) -> Decimal:
        return self.wallet + self.unrealized(marks)

    def used_margin(self, marks: dict[str, Decimal]) -> Decimal:
        """Margin locked by open positions: isolated margin, or initial margin at the mark."""
        total = ZERO
        for sym, pos in self.positions.items():
            if pos.qty == 0:
                continue
            if self.margin_mode is MarginMode.ISOLATED:
                total += pos.isolated_margin
            else:
                total += initial_margin(abs(pos.qty) * marks[sym], self.leverage[sym])
        return total

    def available(self, marks: dict[str, Decimal]) -> Decimal:
        """Balance free for new margin. Isolated: unrealised PnL of isolated positions is not
        available; cross: it counts (Binance's availableBalance)."""
        free = self.wallet - self.used_margin(marks)
        if self.margin_mode is MarginMode.CROSS:
            free += self.unrealized(marks)
        return free

    def liquidation_price(self, symbol: str, marks: dict[str, Decimal]) -> Decimal | None:
        pos = self.positions[symbol]
        if pos.qty == 0:
            return None
        inst = self.instruments[symbol]
        if self.margin_mode is MarginMode.ISOLATED:
            known = self._isolated_liq.get(symbol)
            if (
                known is not None
                and known[0] is inst
                and known[1] is pos.qty
                and known[2] is pos.entry_price
                and known[3] is pos.isolated_margin
            ):
                return known[4]
            liq = liquidation_price_isolated(inst, pos.qty, pos.entry_price, pos.isolated_margin)
            self._isolated_liq[symbol] = (inst, pos.qty, pos.entry_price, pos.isolated_margin, liq)
            return liq
        other_mm = ZERO
        other_upnl = ZERO
        for sym, other in self.positions.items():
            if sym == symbol or other.qty == 0:
                continue
            mark = marks[sym]
            other_mm += cross_maintenance(self.instruments[sym], other.qty, other.entry_price, mark)
            other_upnl += other.qty * (mark - other.entry_price)
        # The wallet may be below zero after a loss realised past it (a stop filled in a gap)
        # while other positions hold profits: refusing it read as "below maintenance at every
        # price" and liquidated a profitable position at its mark.
        try:
            return liquidation_price_cross_any_wallet(
                inst, pos.qty, pos.entry_price, self.wallet, other_mm, other_upnl
            )
        except ValueError:
            # The account is below maintenance whatever this contract's price: it is due for
            # liquidation now, at the current mark.
            return marks[symbol]

    def to_position(self, symbol: str, liquidation_price: Decimal | None = None) -> Position:
        pos = self.positions[symbol]
        return Position(
            symbol=symbol,
            qty=pos.qty,
            entry_price=pos.entry_price,
            leverage=self.leverage[symbol],
            margin_mode=self.margin_mode,
            isolated_margin=pos.isolated_margin,
            liquidation_price=liquidation_price,
        )

    # -- changes -------------------------------------------------------------------------------

    def margin_for(self, symbol: str, qty_delta: Decimal, price: Decimal) -> Decimal:
        """Initial margin an increase of ``|qty_delta|`` at ``price`` needs."""
        return initial_margin(abs(qty_delta) * price, self.leverage[symbol])

    def trade(self, symbol: str, qty_delta: Decimal, price: Decimal, fee: Decimal) -> TradeResult:
        """Apply a fill of signed ``qty_delta`` at ``price``; ``fee`` is paid from the wallet."""
        pos = self.positions[symbol]
        realized = ZERO
        backing: Decimal | None = None  # what may pay a closing fill's loss (None: the wallet)
        new_qty = pos.qty + qty_delta
        if pos.qty == 0 or (pos.qty > 0) == (qty_delta > 0):
            # Increase (or open): weighted average entry, add initial margin.
            notional_before = abs(pos.qty) * pos.entry_price
            notional_added = abs(qty_delta) * price
            pos.entry_price = _avg((notional_before + notional_added) / abs(new_qty))
            if self.margin_mode is MarginMode.ISOLATED:
                pos.isolated_margin += _margin(
                    initial_margin(notional_added, self.leverage[symbol])
                )
        else:
            closed = min(abs(qty_delta), abs(pos.qty))
            realized = unsigned(closed * (price - pos.entry_price) * pos.sign)
            if self.margin_mode is MarginMode.ISOLATED:
                released = pos.isolated_margin * closed / abs(pos.qty)
                pos.isolated_margin = _margin(pos.isolated_margin - released)
                backing = released
            if abs(qty_delta) > abs(pos.qty):
                # Flip: the remainder opens a new position at the fill price.
                remainder = abs(qty_delta) - abs(pos.qty)
                pos.entry_price = price
                pos.isolated_margin = (
                    _margin(initial_margin(remainder * price, self.leverage[symbol]))
                    if self.margin_mode is MarginMode.ISOLATED
                    else ZERO
                )
        pos.qty = new_qty
        if pos.qty == 0:
            pos.entry_price = ZERO
            pos.isolated_margin = ZERO
        change = realized - fee
        shortfall = ZERO
        # A stop filling beyond the bankruptcy price in a fast candle (the last price far past
        # the mark): an isolated position never loses more than its margin, and a cross account
        # left with no position never owes more than its wallet; the insurance fund takes the
        # rest, as it does in a liquidation.
        if backing is not None and change < -backing:
            shortfall, change = -change - backing, -backing
        elif (
            backing is None
            and self.wallet + change < 0
            and all(p.qty == 0 for p in self.positions.values())
        ):
            shortfall, change = -(self.wallet + change), -self.wallet
        self.wallet += change
        return TradeResult(realized_pnl=realized, fee=fee, shortfall=shortfall)

    def pay_funding(self, symbol: str, amount: Decimal) -> None:
        """Debit ``amount`` (credit if negative) for funding; isolated margin absorbs it too."""
        self.wallet -= amount
        pos = self.positions[symbol]
        if self.margin_mode is MarginMode.ISOLATED and pos.qty != 0:
            pos.isolated_margin = max(ZERO, pos.isolated_margin - amount)

    def liquidate(
        self, symbol: str, price: Decimal, fee_rate: Decimal, *, takes_all: bool = False
    ) -> TradeResult:
        """Close the whole position at ``price`` and charge the liquidation fee.

        What backs the position (an isolated position's margin; the wallet in cross) pays the
        realised loss first and then the fee, out of what is left of it: the fee is the venue's
        rate at most and never negative. A loss beyond the backing is the insurance fund's,
        returned as ``shortfall``: the position never costs more than its backing (Binance).
        ``takes_all``: the venue keeps whatever the backing still holds (Bybit takes the
        position over at its bankruptcy price, the margin left going to its insurance fund),
        counted as the fee.
        """
        pos = self.positions[symbol]
        qty = pos.qty
        wallet_before = self.wallet
        backing = pos.isolated_margin if self.margin_mode is MarginMode.ISOLATED else wallet_before
        full_fee = fee_of(qty, price, fee_rate)
        realized = self.trade(symbol, -qty, price, ZERO).realized_pnl
        left = backing + realized  # what the backing holds after the loss (< 0: bankrupt)
        fee = max(left, ZERO) if takes_all else min(full_fee, max(left, ZERO))
        shortfall = max(-left, ZERO)
        # The wallet loses the realised loss and the fee, never more than the backing.
        self.wallet = wallet_before - min(fee - realized, backing)
        return TradeResult(realized_pnl=realized, fee=fee, shortfall=shortfall)

    def liquidate_account(
        self, prices: dict[str, Decimal], fee_rates: dict[str, Decimal], *, takes_all: bool = False
    ) -> AccountLiquidation:
        """Cross margin: close every open position together at ``prices`` (the marks of the
        moment the account fell below its maintenance margin).

        The account is one pot, backed by the wallet as :meth:`liquidate` backs one position:
        the legs' PnL is netted first and the wallet pays the net loss, then the liquidation
        fees out of what is left of it, each leg's fee cut in proportion when that is less than
        the venue's rate (Binance keeps what the margin still holds as its clearance fee,
        https://www.binance.com/en/support/faq/360033525271). The wallet never goes below zero;
        the loss beyond it, and only the loss (the venue charges no fee a bankrupt account
        cannot pay), is the insurance fund's, reported as ``shortfall``. A profitable leg can
        therefore never be paid out after a losing leg has emptied the wallet. ``takes_all``:
        the venue keeps what the wallet still holds (Bybit: positions taken over at their
        bankruptcy prices), counted as the fee of the leg with the largest one.
        """
        if self.margin_mode is not MarginMode.CROSS:
            raise ValueError("liquidate_account: only a cross-margin account is liquidated whole")
        wallet_before = self.wallet
        realized: dict[str, Decimal] = {}
        fees: dict[str, Decimal] = {}
        for sym, pos in self.positions.items():
            if pos.qty == 0:
                continue
            price = prices[sym]
            fees[sym] = fee_of(pos.qty, price, fee_rates[sym])
            realized[sym] = self.trade(sym, -pos.qty, price, ZERO).realized_pnl
        left = wallet_before + sum(realized.values(), ZERO)  # < 0: bankrupt
        shortfall = max(-left, ZERO)
        held = max(left, ZERO)  # what the wallet still holds: the most the fees take
        full = sum(fees.values(), ZERO)
        if fees:
            largest = max(fees, key=lambda s: (fees[s], s))
            if full > held:
                _cut_pro_rata(fees, held, largest)
            elif takes_all:
                fees[largest] += held - full
        self.wallet = held - sum(fees.values(), ZERO)
        return AccountLiquidation(realized, fees, wallet_before, self.wallet, shortfall)


def _cut_pro_rata(fees: dict[str, Decimal], total: Decimal, largest: str) -> None:
    """Scale ``fees`` down to sum to exactly ``total`` (< their sum), each in proportion, to
    bounded digits rounded down; the rounding's remainder goes to ``largest``."""
    full = sum(fees.values(), ZERO)
    for sym, fee in fees.items():
        fees[sym] = (fee * total / full).quantize(MARGIN_PLACES, rounding=ROUND_FLOOR)
    fees[largest] += total - sum(fees.values(), ZERO)
