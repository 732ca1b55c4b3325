"""What the simulated exchange did on its own: triggers, liquidations, funding payments."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal(0)


class SimEventKind(StrEnum):
    STOP_LOSS = "stop_loss"  # a stop-market order triggered and filled
    TAKE_PROFIT = "take_profit"  # a take-profit-market order triggered and filled
    LIQUIDATION = "liquidation"  # the mark crossed the liquidation price
    FUNDING = "funding"  # a funding settlement paid or received
    EXPIRED = "expired"  # a triggered reduce-only order had nothing to reduce
    INSURANCE = "insurance"  # a loss beyond the wallet (or isolated margin): the insurance fund


@dataclass(frozen=True, slots=True, kw_only=True)
class SimEvent:
    """Something the exchange did on its own: a trigger, a liquidation, a funding payment."""

    ts_ms: int
    kind: SimEventKind
    symbol: str
    detail: str
    amount: Decimal = ZERO  # funding paid (+) or received (-), or realised PnL
