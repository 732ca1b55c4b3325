"""The policy's output for one contract."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

ZERO = Decimal(0)
_LEV = Decimal("0.0001")  # leverage is stored with a bounded number of digits


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Target state for one contract, with the reason a person can read.

    ``target_qty`` is signed (base asset). ``stop_loss``/``take_profit`` are trigger prices for
    the target position (``None`` when the target is flat or the policy sets no take-profit).
    ``allow_increase`` is False when the policy only permits de-levering (e.g. ``follow``).
    ``participation_capped`` is True when the volume participation cap cut an increase: the
    target is this tick's step and the rest follows over the next ticks, so the step is traded
    even below the rebalance tolerance (bot.policy.participation). ``above_cap`` is True when
    the position held is above a hard cap the target was sized within (the risk limits'
    leverage or notional per contract, the venue's largest position; bot.policy.decide
    ``within_hard_caps``): a price move carried it there, and the cut is traded even below the
    rebalance tolerance.
    """

    symbol: str
    direction: int  # -1, 0, +1
    target_leverage: Decimal  # >= 0; notional / equity allocated to this contract
    target_qty: Decimal
    stop_loss: Decimal | None
    take_profit: Decimal | None
    reason: str
    allow_increase: bool = True
    participation_capped: bool = False
    above_cap: bool = False

    @classmethod
    def flat(cls, symbol: str, reason: str, *, allow_increase: bool = True) -> Decision:
        """A decision to hold nothing of ``symbol``: no direction, size or protective prices."""
        return cls(
            symbol=symbol,
            direction=0,
            target_leverage=ZERO,
            target_qty=ZERO,
            stop_loss=None,
            take_profit=None,
            reason=reason,
            allow_increase=allow_increase,
        )

    def resized(
        self, qty: Decimal, leverage_factor: Decimal, note: str, after: str = ""
    ) -> Decision:
        """This decision cut to ``qty`` (>= 0, on the step grid; its sign follows the target),
        the leverage scaled by ``leverage_factor`` (rounded down), ``note`` added to the reason
        before the new size and ``after`` behind it. Cut to zero, it closes: no direction and
        no protective prices."""
        signed = qty if self.target_qty > 0 or qty == 0 else -qty  # never -0
        kept = qty != 0
        # Decision(...) with every field, not dataclasses.replace: the same object, cheaper.
        return Decision(
            symbol=self.symbol,
            direction=self.direction if kept else 0,
            target_leverage=(self.target_leverage * leverage_factor).quantize(_LEV, ROUND_FLOOR),
            target_qty=signed,
            stop_loss=self.stop_loss if kept else None,
            take_profit=self.take_profit if kept else None,
            reason=f"{self.reason}; {note}{signed}{after}",
            allow_increase=self.allow_increase,
            participation_capped=self.participation_capped,
            above_cap=self.above_cap,
        )
