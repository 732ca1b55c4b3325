"""Positions and the account as the exchange reports them (one-way mode)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from bot.domain.enums import MarginMode
from bot.domain.orders import Order

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Position:
    """A one-way position. ``qty`` is signed: > 0 long, < 0 short, in the base asset."""

    symbol: str
    qty: Decimal
    entry_price: Decimal
    leverage: Decimal
    margin_mode: MarginMode
    isolated_margin: Decimal = ZERO  # wallet margin held by an isolated position; 0 for cross
    liquidation_price: Decimal | None = None  # as the exchange reports it; None if unknown

    @property
    def sign(self) -> int:
        return (self.qty > 0) - (self.qty < 0)

    @property
    def is_open(self) -> bool:
        return self.qty != 0

    def notional(self, mark: Decimal) -> Decimal:
        """Absolute notional at ``mark``, quote currency."""
        return abs(self.qty) * mark

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return self.qty * (mark - self.entry_price)


@dataclass(frozen=True, slots=True)
class Balance:
    """Wallet in the quote (settlement) asset. Wallet balance excludes unrealised PnL.

    ``available``: what the venue says is free for new margin (Binance ``availableBalance``);
    ``None`` when its answer does not say (unknown, never zero)."""

    asset: str
    wallet: Decimal
    available: Decimal | None


@dataclass(frozen=True, slots=True)
class AccountState:
    """What the policy and the risk gate see of the account at one tick."""

    balance: Balance
    positions: dict[str, Position]
    open_orders: dict[str, tuple[Order, ...]] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)

    def position(self, symbol: str) -> Position | None:
        pos = self.positions.get(symbol)
        return pos if pos is not None and pos.is_open else None

    def unrealized_pnl(self) -> Decimal:
        total = ZERO
        for sym, pos in self.positions.items():
            mark = self.marks.get(sym)
            if mark is not None and pos.is_open:
                total += pos.unrealized_pnl(mark)
        return total

    def equity(self) -> Decimal:
        """Wallet balance plus unrealised PnL at the current marks (quote currency)."""
        return self.balance.wallet + self.unrealized_pnl()

    def gross_notional(self) -> Decimal:
        total = ZERO
        for sym, pos in self.positions.items():
            mark = self.marks.get(sym, pos.entry_price)
            total += pos.notional(mark)
        return total
