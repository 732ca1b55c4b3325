"""Per-contract settings the engine needs: how the direction is chosen, and caps."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, Protocol


class DirectionSource(Protocol):
    def direction_at(self, ms: int) -> int: ...


@dataclass(frozen=True, slots=True)
class ContractSpec:
    symbol: str
    direction: Literal["long", "short", "signal", "follow", "hedge"]
    max_leverage: Decimal
    signal: DirectionSource | None = None
    max_notional: Decimal | None = None  # per-contract cap; the gate also applies the global one

    def notional_cap(self, global_cap: Decimal) -> Decimal:
        """The notional cap the risk gate applies: the tighter of this and the global one."""
        return global_cap if self.max_notional is None else min(global_cap, self.max_notional)

    def resolve(self, now_ms: int, position_qty: Decimal) -> tuple[int, bool]:
        """(direction for this tick, whether increases are allowed)."""
        if self.direction == "long":
            return 1, True
        if self.direction == "short":
            return -1, True
        if self.direction == "hedge":
            raise ValueError(f"{self.symbol}: a hedge leg's target comes from the hedge policy")
        if self.direction == "follow":
            # Manage a position the trader opened: de-lever and protect, never increase.
            return (position_qty > 0) - (position_qty < 0), False
        if self.signal is None:
            raise ValueError(f"{self.symbol}: direction 'signal' without a signal series")
        return self.signal.direction_at(now_ms), True
