"""The policy's output for one contract."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Target state for one contract, with the reason a person can read.

    ``target_qty`` is signed (base asset). ``stop_loss``/``take_profit`` are trigger prices for
    the target position (``None`` when the target is flat or the policy sets no take-profit).
    ``allow_increase`` is False when the policy only permits de-levering (e.g. ``follow``).
    """

    symbol: str
    direction: int  # -1, 0, +1
    target_leverage: Decimal  # >= 0; notional / equity allocated to this contract
    target_qty: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    reason: str
    allow_increase: bool = True
