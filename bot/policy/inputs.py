"""What the policy is given for one contract at one tick."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from bot.domain.instrument import Instrument
from bot.domain.market import MarketSnapshot
from bot.domain.position import Position


@dataclass(frozen=True, slots=True)
class ContractView:
    """One contract as the policy sees it. ``direction`` is already resolved for this tick
    (configured side, or the trader's signal, or the side of a followed position)."""

    symbol: str
    direction: int  # -1 short, 0 flat, +1 long
    allow_increase: bool
    max_leverage: Decimal  # the tighter of the contract's and the risk limits' caps
    instrument: Instrument
    market: MarketSnapshot
    position: Position | None
    # trigger of the stop-loss resting now, for the ratchet (not once the mark has crossed it:
    # bot.policy.protection.trailing_anchor)
    resting_stop: Decimal | None
    sleeve_equity: Decimal  # account equity allocated to this contract (quote)
    # The tighter of the contract's and the risk limits' notional caps (quote); None: no cap.
    max_notional: Decimal | None = None
    # Slippage a triggered exit is expected to pay, fraction of price (the risk limits'
    # stop_slippage, risk.expected_stop_slippage_bps; by default that key's default, 10 bps):
    # with the taker fees, the round trip a take-profit must clear (Instrument.round_trip).
    exit_slippage: Decimal = Decimal("0.001")

    @property
    def current_leverage(self) -> Decimal:
        """Notional at the mark over the contract's sleeve of equity."""
        if self.position is None or self.sleeve_equity <= 0:
            return Decimal(0)
        return self.position.notional(self.market.mark_price) / self.sleeve_equity
