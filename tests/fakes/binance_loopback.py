"""A loopback Binance USD-M REST server: the real ccxt ``binanceusdm`` class talks HTTP to it.

The server speaks the wire protocol (routes, HMAC signing, ``recvWindow``, JSON shapes, error
codes and HTTP statuses) and holds no trading logic: orders, positions, balances and trigger
evaluation belong to the backend, any :class:`bot.ports.exchange.ExchangePort` (normally
:class:`bot.sim.exchange.SimulatedExchange`). What the server adds is what Binance checks before an
order reaches its matching engine: symbol filters, ``-4120`` for a conditional type on
``/fapi/v1/order``, ``-2021`` for a stop that would trigger at once, position-side checks.

Conventions (see tests/fakes/README.md):

* ``symbols`` are ccxt unified symbols (``"BTC/USDT:USDT"``); the Binance id is base + quote.
* Regular orders (``/fapi/v1/order``) and conditional orders (``/fapi/v1/algoOrder``) are separate
  books as on Binance: a stop is invisible to ``openOrders`` and to ``GET /fapi/v1/order``.
* Server time is ``clock.now_ms() + server_time_offset_ms``; signed requests must carry a
  ``timestamp`` within ``recvWindow`` of it, so use a clock near wall time (``LiveClock``).
* Faults (:class:`Fault`) are consumed in the order they were injected, by method + path.

Binance references: https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info
(signing, recvWindow), .../error-code (codes), .../trade/rest-api (order and algo-order shapes),
https://developers.binance.com/docs/derivatives/change-log (2025-12-09: conditional orders
moved to the Algo Order API).

The routes live in modules by endpoint group (``binance_market``, ``binance_account``,
``binance_orders``, ``binance_spot``) over ``binance_wire`` (codes, signing, parameters); the
HTTP plumbing, fault injection and request log are shared with the Bybit server in
``loopback_core``.
"""

from __future__ import annotations

from types import MethodType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from .binance_account import BinanceAccountRoutes
from .binance_market import BinanceMarketRoutes
from .binance_orders import BinanceOrderRoutes
from .binance_spot import BinanceSpotRoutes
from .binance_wire import MSG, BinanceError
from .loopback_core import (
    NULLED_FIELDS,
    CandleKind,
    CandleRow,
    Fault,
    FaultKind,
    RecordedRequest,
    Route,
)

if TYPE_CHECKING:
    import ccxt

__all__ = [
    "MSG",
    "NULLED_FIELDS",
    "BinanceError",
    "CandleKind",
    "CandleRow",
    "Fault",
    "FaultKind",
    "LoopbackBinance",
    "RecordedRequest",
    "point_ccxt_at",
]


class LoopbackBinance(
    BinanceMarketRoutes, BinanceAccountRoutes, BinanceOrderRoutes, BinanceSpotRoutes
):
    """Binance USD-M REST on ``127.0.0.1``, backed by an :class:`ExchangePort`.

    ``start()`` binds a free port (``base_url`` then is ``http://127.0.0.1:<port>``); point a ccxt
    instance at it with :func:`point_ccxt_at`. Requests are served on threads; every request that
    touches the backend holds :attr:`lock`, so hold it too when driving the backend from another
    thread while requests are in flight. Usable as a context manager.
    """

    def __enter__(self) -> LoopbackBinance:
        self.start()
        return self

    def _route_table(self) -> dict[tuple[str, str], Route]:
        return {
            **self._market_routes(),
            **self._account_routes(),
            **self._order_routes(),
            **self._spot_routes(),
        }


_LINEAR_PREFIXES = {"/fapi": "linear", "/dapi": "inverse", "/eapi": "option"}
_LINEAR_PREFIXES |= {"/papi": "portfolioMargin", "/sapi": "spot", "/api": "spot"}


def point_ccxt_at(exchange: ccxt.binanceusdm, base_url: str) -> None:
    """Rewrite every REST url of ``exchange`` (sync or async ccxt) to ``base_url``.

    ``https://fapi.binance.com/fapi/v1`` becomes ``<base_url>/fapi/v1``, and so on. ccxt picks
    its error table by host (``binance.get_exceptions_by_url``); the instance gets a lookup by
    path prefix instead, so ``-2019`` raises ``InsufficientFunds`` here as it does on
    fapi.binance.com rather than a plain ``ExchangeError``.
    """
    base = base_url.rstrip("/")
    api = exchange.urls["api"]
    for key, url in list(api.items()):
        if isinstance(url, str):
            api[key] = base + urlsplit(url).path

    def exceptions_by_url(self: Any, url: str | None, exact_or_broad: str) -> dict[str, Any]:
        if url is None or not url.startswith(base + "/"):
            return {}
        path = url[len(base) :]
        for prefix, market_type in _LINEAR_PREFIXES.items():
            if path.startswith(prefix + "/"):
                table = self.safe_dict(self.exceptions, market_type, {})
                return cast(dict[str, Any], self.safe_dict(table, exact_or_broad, {}))
        return {}

    exchange.get_exceptions_by_url = MethodType(exceptions_by_url, exchange)
