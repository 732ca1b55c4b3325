"""The account as one tick sees it: read from the exchange at reconcile, updated after trades."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.domain.orders import Order
from bot.domain.position import Position
from bot.ports.store import storable

ZERO = Decimal(0)


@dataclass(slots=True)
class AccountView:
    wallet: Decimal
    positions: dict[str, Position]
    resting: dict[str, list[Order]]
    marks: dict[str, Decimal]
    _equity: Decimal | None = None  # memo; cleared by ``changed`` when positions or wallet move
    # The venue's available balance (free for new margin) as read; None: not known, and
    # unknown is never zero (no increase is sized on it).
    available: Decimal | None = None

    def changed(self) -> None:
        self._equity = None

    def qty(self, symbol: str) -> Decimal:
        pos = self.positions.get(symbol)
        return pos.qty if pos is not None else ZERO

    def equity(self) -> Decimal:
        if self._equity is None:
            upnl = ZERO  # summed left to right from zero, as sum() would (a loop: no generator)
            marks = self.marks
            for s, p in self.positions.items():
                if s in marks:
                    upnl += p.unrealized_pnl(marks[s])
            # (to the digits a store keeps: the peak and the day's start are recorded from it)
            self._equity = storable(self.wallet + upnl)
        return self._equity
