"""The effective risk limits: the stricter of the configuration's and the policy's."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_leverage_per_contract: Decimal
    max_gross_leverage: Decimal
    max_notional_per_contract: Decimal
    daily_loss: Decimal  # fraction of the UTC day's starting equity
    max_drawdown: Decimal  # fraction of the peak equity
    stale_data_ms: int
    max_orders_per_minute: int
    on_daily_loss: Literal["reducing", "halted"] = "halted"
    # Expected slippage of a triggered stop (fraction of price), for the loss budget in stops.
    stop_slippage: Decimal = Decimal("0.001")
    # account reads that cannot be trusted, in a row, before the state moves to reducing
    max_unreadable_reads: int = 3
    # positions left without a valid stop after escalation, in a row, before reducing
    max_protection_failures: int = 2
