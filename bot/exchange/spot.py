"""Spot holdings declared in the configuration: what paper trading and simulation hedge.

Live trading with ``spot.source = "exchange"`` reads the venue's spot wallet through the ccxt
adapter instead (:meth:`bot.exchange.ccxt_adapter.CcxtExchange.fetch_spot_balances`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from bot.errors import ConfigError

ZERO = Decimal(0)


class ConfiguredSpotWallet:
    """Implements :class:`bot.ports.exchange.SpotWalletPort` from fixed quantities."""

    def __init__(self, holdings: Mapping[str, Decimal]) -> None:
        for asset, qty in holdings.items():
            if qty < 0:
                raise ConfigError(f"spot holding {asset}: quantity {qty} is negative")
        self.holdings = dict(holdings)

    def fetch_spot_balances(self, assets: Sequence[str]) -> dict[str, Decimal]:
        return {a: self.holdings.get(a, ZERO) for a in assets}
