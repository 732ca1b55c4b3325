"""Binance spot account read (``GET /api/v3/account``): the spot wallet a hedge covers.

The futures backend does not trade spot; tests set :attr:`BinanceBase.spot_balances`
(asset -> (free, locked)) and the route serves them in Binance's shape.
https://developers.binance.com/docs/binance-spot-api-docs/rest-api/account-endpoints
"""

from __future__ import annotations

from collections.abc import Callable

from .binance_wire import BinanceBase, _Req, _s
from .loopback_core import Json

RouteMap = dict[tuple[str, str], tuple[Callable[[_Req], Json], bool]]


class BinanceSpotRoutes(BinanceBase):
    """The spot wallet, read-only."""

    def _spot_routes(self) -> RouteMap:
        return {("GET", "/api/v3/account"): (self._spot_account, True)}

    def _spot_account(self, req: _Req) -> Json:
        """Only the fields ccxt's balance parser reads, plus the account flags."""
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": True,
            "updateTime": req.now_ms,
            "accountType": "SPOT",
            "balances": [
                {"asset": a, "free": _s(free), "locked": _s(locked)}
                for a, (free, locked) in sorted(self.spot_balances.items())
            ],
            "permissions": ["SPOT"],
        }
