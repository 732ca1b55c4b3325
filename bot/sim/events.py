"""What the simulated exchange did on its own: triggers, liquidations, funding payments."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class SimEvent:
    """Something the exchange did on its own: a trigger, a liquidation, a funding payment."""

    ts_ms: int
    kind: str  # "stop_loss" | "take_profit" | "liquidation" | "funding" | "expired"
    symbol: str
    detail: str
    amount: Decimal = ZERO  # funding paid (+) or received (-), or realised PnL
