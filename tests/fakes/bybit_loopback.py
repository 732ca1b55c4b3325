"""A loopback Bybit v5 REST server (linear USDT perpetuals): the real ccxt ``bybit`` class talks
HTTP to it.

Same design as :mod:`tests.fakes.binance_loopback`: the server speaks the wire protocol (routes,
``X-BAPI-*`` HMAC signing, ``recv_window``, the ``retCode`` envelope, Bybit's error codes and
JSON shapes) and holds no trading logic; orders, positions, balances and trigger evaluation
belong to the backend, any :class:`bot.ports.exchange.ExchangePort` (normally
:class:`bot.sim.exchange.SimulatedExchange`). What the server adds is what Bybit checks before
an order reaches its matching engine: instrument filters, trigger direction (110092/110093),
``orderLinkId`` uniqueness (110072), "not modified" settings (110043, 110025, 110026), and the
unified-account rules.

Routes by endpoint group: ``bybit_market`` (public), ``bybit_account`` (account, positions,
settings), ``bybit_orders`` (orders, trading-stop), over ``bybit_wire`` (codes, signing,
parameters); HTTP plumbing, faults and the request log are shared with the Binance server in
``loopback_core``. See tests/fakes/README.md.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .bybit_account import BybitAccountRoutes
from .bybit_market import BybitMarketRoutes
from .bybit_orders import BybitOrderRoutes
from .bybit_wire import MSG, BybitError
from .loopback_core import (
    NULLED_FIELDS,
    CandleKind,
    CandleRow,
    Fault,
    FaultKind,
    RecordedRequest,
    Route,
)

__all__ = [
    "MSG",
    "NULLED_FIELDS",
    "BybitError",
    "CandleKind",
    "CandleRow",
    "Fault",
    "FaultKind",
    "LoopbackBybit",
    "RecordedRequest",
    "point_ccxt_at",
]


class LoopbackBybit(BybitMarketRoutes, BybitAccountRoutes, BybitOrderRoutes):
    """Bybit v5 REST (unified trading account, ``category=linear``) on ``127.0.0.1``.

    ``start()`` binds a free port; point a ccxt ``bybit`` instance at it with
    :func:`point_ccxt_at` (or the project's ``[exchange] api_url``). Every request that touches
    the backend holds :attr:`lock`. Usable as a context manager.
    """

    def __enter__(self) -> LoopbackBybit:
        self.start()
        return self

    def _route_table(self) -> dict[tuple[str, str], Route]:
        return {**self._market_routes(), **self._account_routes(), **self._order_routes()}


def point_ccxt_at(exchange: Any, base_url: str) -> None:
    """Rewrite every REST url of a ccxt ``bybit`` instance (sync or async) to ``base_url``.

    Bybit's urls are ``https://api.{hostname}`` with the path in the request, and ccxt picks
    Bybit's error table by code, not by host, so nothing else needs changing.
    """
    base = base_url.rstrip("/")
    api = exchange.urls["api"]
    for key, url in list(api.items()):
        if isinstance(url, str):
            api[key] = base + urlsplit(url).path
