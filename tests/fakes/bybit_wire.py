"""Bybit v5 wire basics shared by the Bybit route modules: the ``retCode`` envelope, error codes,
request parameters (query string for GET, JSON body for POST), ``X-BAPI-*`` signing, symbol
lookup and the pre-trade checks Bybit makes before an order reaches its matching engine.

Bybit references: https://bybit-exchange.github.io/docs/v5/guide (authentication: the signature
is the hex HMAC-SHA256 of ``timestamp + api_key + recv_window + (query string | JSON body)``,
the timestamp rule ``server_time - recv_window <= timestamp < server_time + 1000``),
https://bybit-exchange.github.io/docs/v5/error (codes), .../v5/order/create-order (orders).
ccxt's ``bybit.sign`` (ccxt 4.5.90) is what actually sends these.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from bot.clock import Clock
from bot.domain.enums import MarginMode, OrderSide, OrderStatus, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import Order
from bot.errors import (
    AuthenticationFailed,
    DuplicateClientId,
    ExchangeError,
    InsufficientMargin,
    InvalidQuantity,
    OrderNotFound,
    OrderRejected,
    ReduceOnlyRejected,
)
from bot.ports.exchange import ExchangePort

from .loopback_core import (
    Fault,
    Json,
    LoopbackServer,
    Reply,
    WireError,
    decimals,
    json_reply,
    money,
    plain,
)

# Messages as Bybit sends them (https://bybit-exchange.github.io/docs/v5/error and observed
# replies quoted in ccxt's bybit.py). ccxt maps by retCode, never by text.
MSG: dict[int, str] = {
    10001: "params error",
    10002: "invalid request, please check your server timestamp or recv_window param",
    10003: "API key is invalid.",
    10004: "error sign! origin_string[{payload}]",
    10006: "Too many visits. Exceeded the API Rate Limit.",
    10016: "Server Error.",
    10017: "Route not found",
    100028: "The API cannot be accessed by unified account users.",
    110001: "order not exists or too late to cancel",
    110007: "ab not enough for new order",
    110008: "The order has been filled or cancelled.",
    110009: "The number of stop orders exceeds maximum limit allowed",
    110013: "Due to risk limit, cannot set leverage",
    110016: "Requested quantity of contracts exceeds risk limit, please adjust your risk limit "
    "level before trying again",
    110017: "current position is zero, cannot fix reduce-only order qty",
    110024: "You have an existing position, so position mode cannot be switched",
    110025: "Position mode is not modified",
    110026: "Cross/isolated margin mode is not modified",
    110028: "You have existing open orders, so position mode cannot be switched",
    110043: "leverage not modified",
    110044: "Insufficient available margin",
    110072: "OrderLinkedID is duplicate",
    110092: "expect Rising, but trigger_price[{trigger}] <= current[{current}]",
    110093: "expect Falling, but trigger_price[{trigger}] >= current[{current}]",
    110094: "Order does not meet minimum order value {limit}USDT",
    3400045: "Set margin mode failed",
}
# Backend (bot.errors) classes and the SimulatedExchange's Binance-style codes -> Bybit codes.
_CLASS_CODES: tuple[tuple[type[ExchangeError], int], ...] = (
    (InsufficientMargin, 110007),
    (ReduceOnlyRejected, 110017),
    (DuplicateClientId, 110072),
    (OrderNotFound, 110001),
    (InvalidQuantity, 10001),
)
_BINANCE_CODES = {
    -2019: 110007,
    -4161: 110044,
    -2022: 110017,
    -4116: 110072,
    -2013: 110001,
    -4164: 110094,
    -2027: 110016,
    -4048: 3400045,
}
_LINK_ID = re.compile(r"^[A-Za-z0-9_\-]{1,36}$")  # orderLinkId: <= 36 chars, letters/digits/_-
_NUMBER = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")
# Bybit kline intervals (minutes, or D/W/M) -> milliseconds.
_INTERVAL_MS = {
    **{str(m): m * 60_000 for m in (1, 3, 5, 15, 30, 60, 120, 240, 360, 720)},
    "D": 86_400_000,
    "W": 604_800_000,
    "M": 2_592_000_000,
}
_ORDER_NS = uuid.UUID("6f1c0b8e-6c52-4a43-9c36-3b7f3f2a9d10")  # namespace for order ids


class BybitError(WireError):
    """A Bybit error: HTTP 200 with ``{"retCode": code, "retMsg": msg, "result": {}}``."""

    def __init__(
        self, code: int, msg: str | None = None, status: int = 200, result: Json = None
    ) -> None:
        super().__init__(code, msg if msg is not None else MSG.get(code, "Unknown error."), status)
        self.result = result if result is not None else {}


def params_error(detail: str) -> BybitError:
    return BybitError(10001, f"params error: {detail}")


@dataclass(frozen=True, slots=True)
class BybitReq:
    """One request's parameters: strings from a query string, JSON values from a body."""

    params: Mapping[str, Any]
    now_ms: int

    def get(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float, str)):
            return str(value)
        raise params_error(f"{name} must be a string or a number")

    def need(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise params_error(f"{name} is required")
        return value

    def dec(self, name: str) -> Decimal | None:
        raw = self.get(name)
        if raw is None:
            return None
        if not _NUMBER.match(raw):
            raise params_error(f"{name} invalid: {raw!r}")
        try:
            return Decimal(raw)
        except InvalidOperation:
            raise params_error(f"{name} invalid: {raw!r}") from None

    def flag(self, name: str) -> bool:
        value = self.params.get(name)
        if value is None or value == "":
            return False
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise params_error(f"{name} must be a boolean")

    def int_(self, name: str, default: int | None = None) -> int | None:
        raw = self.get(name)
        if raw is None:
            return default
        if not raw.lstrip("-").isdigit():
            raise params_error(f"{name} must be an integer, got {raw!r}")
        return int(raw)


class BybitBase(LoopbackServer):
    """Bybit's side of the shared pipeline: ``X-BAPI-*`` signing, the ``retCode`` envelope, the
    unified (UTA) account settings, and the order-id registry the route modules share."""

    venue = "bybit"

    def __init__(
        self,
        backend: ExchangePort,
        *,
        api_key: str,
        api_secret: str,
        clock: Clock,
        symbols: Sequence[str],
        server_time_offset_ms: int = 0,
    ) -> None:
        # A unified trading account (UTA 2.0): margin mode is account-wide (set-margin-mode),
        # one-way position mode unless switched.
        self.unified_margin_status = 5
        # A delisting, as instruments-info shows it: `status` per contract (default Trading;
        # asked without a status, the venue lists Trading contracts only) and `deliveryTime`
        # (ms; default "0": none scheduled; a perpetual keeps Trading until then).
        self.market_status: dict[str, str] = {}
        self.delivery_times: dict[str, int] = {}
        # Contracts the venue no longer lists at all: absent from instruments-info whatever the
        # status asked, and 10001 "params error: symbol invalid" to every request naming them
        # (the linear category's answer for a symbol it does not know).
        self.delisted: set[str] = set()
        self.hedge_mode = False  # set by coin (every contract)
        # Set by symbol: Bybit keeps a position mode per symbol as well as per coin.
        self.hedged_symbols: set[str] = set()
        self._margin_mode: MarginMode | None = None  # unknown until read from a position or set
        # One wire order (orderId + orderLinkId) is one or more backend orders: an amend places
        # a new backend order under a derived client id and cancels the old one.
        self._links: dict[tuple[str, str], _Link] = {}  # (symbol, orderLinkId) -> link
        self._link_of: dict[tuple[str, str], str] = {}  # (symbol, backend cid) -> orderLinkId
        self._by_oid: dict[str, tuple[str, str]] = {}  # orderId -> (symbol, orderLinkId)
        self._oid_seq: dict[str, int] = {}  # orderId -> arrival number (ties of createdTime)
        self._extras: dict[tuple[str, str], dict[str, Json]] = {}  # (symbol, link) -> wire fields
        self._tpsl: dict[tuple[str, str], str] = {}  # (symbol, "sl"|"tp") -> trading-stop link
        self._next_link = 0
        self._closed_pnl: list[dict[str, Json]] = []
        self._pnl_seen: set[tuple[str, str]] = set()
        self._entry_seen: dict[str, Decimal] = {}
        self._leverage_seen: dict[str, Decimal] = {}
        super().__init__(
            backend,
            api_key=api_key,
            api_secret=api_secret,
            clock=clock,
            symbols=symbols,
            server_time_offset_ms=server_time_offset_ms,
        )

    # -- pipeline hooks --------------------------------------------------------------------

    def _parse_params(self, method: str, query: str, body: str) -> dict[str, Any]:
        params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
        if body:
            try:
                decoded = json.loads(body)
            except ValueError:
                raise params_error("request body is not JSON") from None
            if not isinstance(decoded, dict):
                raise params_error("request body must be a JSON object")
            params.update(decoded)
        return params

    def _request(self, params: dict[str, Any], now_ms: int) -> BybitReq:
        # Runs under the lock before every route: book the closes the backend made on its own
        # (triggered stops) since the last request.
        self._sync_closed_pnl(now_ms)
        return BybitReq(params, now_ms)

    def _success(self, payload: Json, now: int) -> Reply:
        return json_reply(
            200,
            {"retCode": 0, "retMsg": "OK", "result": payload, "retExtInfo": {}, "time": now},
        )

    def _error(self, err: WireError) -> Reply:
        body = {
            "retCode": err.code,
            "retMsg": err.msg,
            "result": getattr(err, "result", {}),
            "retExtInfo": {},
            "time": self.server_time_ms(),
        }
        return json_reply(err.status, body, code=err.code)

    def _from_backend(self, exc: ExchangeError, params: Mapping[str, Any]) -> WireError:
        return from_backend(exc, self._maybe_instrument(params))

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "timestamp":
            return self._error(BybitError(10002))
        if fault.kind == "ip_ban":
            # The IP limit (600 requests in 5 s): "If you encounter the error '403, access too
            # frequent', it indicates that your IP has exceeded the allowed request frequency
            # ... wait for at least 10 minutes" (https://bybit-exchange.github.io/docs/v5/
            # rate-limit). Not the API's answer: no retCode envelope, no X-Bapi-Limit-* header
            # (those are the per-UID limits'), no end named.
            return Reply(403, b"403, access too frequent", "text/plain")
        now = self.server_time_ms()
        # Bybit reports its per-UID limits in X-Bapi-Limit-* headers, not Retry-After.
        reset = now + 1000 * (fault.retry_after if fault.retry_after is not None else 1)
        headers = (
            ("X-Bapi-Limit-Status", "0"),
            ("X-Bapi-Limit", "10"),
            ("X-Bapi-Limit-Reset-Timestamp", str(reset)),
        )
        body = {"retCode": 10006, "retMsg": MSG[10006], "result": {}, "retExtInfo": {}}
        return json_reply(200, {**body, "time": now}, headers, code=10006)

    def _not_found(self, method: str, path: str) -> Reply:
        # Loud on purpose: ccxt raises a plain ExchangeError for an unknown retCode.
        msg = f"loopback server: {method} {path} is not implemented"
        body = {"retCode": 10017, "retMsg": msg, "result": {}, "retExtInfo": {}}
        return json_reply(404, body, code=10017)

    def _internal_error(self, exc: Exception) -> Reply:
        msg = f"loopback internal error: {exc!r}"
        body = {"retCode": 10016, "retMsg": msg, "result": {}, "retExtInfo": {}}
        return json_reply(200, body, code=10016)

    def _authenticate(
        self,
        params: dict[str, Any],
        query: str,
        body: str,
        headers: Mapping[str, str],
        now: int,
    ) -> None:
        """Bybit v5 private checks: API key, timestamp within recv_window, HMAC-SHA256."""
        api_key = headers.get("x-bapi-api-key")
        if not api_key or not hmac.compare_digest(api_key, self._key):
            raise BybitError(10003)
        raw_ts, raw_window = headers.get("x-bapi-timestamp"), headers.get("x-bapi-recv-window")
        if raw_ts is None or not raw_ts.isdigit():
            raise params_error("X-BAPI-TIMESTAMP header is missing or not an integer")
        window = int(raw_window) if raw_window and raw_window.isdigit() else 5000
        timestamp = int(raw_ts)
        # https://bybit-exchange.github.io/docs/v5/guide#parameters-for-authenticated-endpoints
        if not (now - window <= timestamp < now + 1000):
            detail = f"req_timestamp[{timestamp}],server_timestamp[{now}],recv_window[{window}]"
            raise BybitError(10002, f"{MSG[10002]}. {detail}")
        payload = f"{raw_ts}{api_key}{raw_window or ''}{body if body else query}"
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, (headers.get("x-bapi-sign") or "").lower()):
            raise BybitError(10004, MSG[10004].format(payload=payload))

    # -- helpers ---------------------------------------------------------------------------

    def _maybe_instrument(self, params: Mapping[str, Any]) -> Instrument | None:
        sym = self._by_id.get(str(params.get("symbol", "")))
        return self.backend.instrument(sym) if sym is not None else None

    def _symbol(self, req: BybitReq) -> str:
        sid = req.need("symbol")
        sym = self._by_id.get(sid)
        if sym is None or sym in self.delisted:
            raise params_error(f"symbol invalid: {sid}")
        return sym

    def hedged(self, sym: str) -> bool:
        """Whether ``sym`` is in hedge (both sides) mode."""
        return self.hedge_mode or sym in self.hedged_symbols

    def _symbols_of(self, req: BybitReq) -> list[str]:
        if req.get("symbol") is not None:
            return [self._symbol(req)]
        return [s for s in self._symbols if s not in self.delisted]

    def _linear(self, req: BybitReq) -> bool:
        """True for ``category=linear``; other categories are valid but hold nothing here."""
        category = req.need("category")
        if category not in ("linear", "inverse", "spot", "option"):
            raise params_error(f"category invalid: {category}")
        return category == "linear"

    def _account_margin_mode(self) -> MarginMode:
        """The account's mode: learnt from an open position, else what was set, else cross."""
        for pos in self._positions().values():
            self._margin_mode = pos.margin_mode
            return pos.margin_mode
        return self._margin_mode or MarginMode.CROSS

    # -- order registry --------------------------------------------------------------------

    def _register(self, symbol: str, link: str, backend_cid: str, *, minted: bool) -> _Link:
        oid = str(uuid.uuid5(_ORDER_NS, f"{symbol}|{link}|{len(self._by_oid)}"))
        entry = _Link(oid, link, backend_cid, minted)
        self._links[(symbol, link)] = entry
        self._link_of[(symbol, backend_cid)] = link
        self._by_oid[oid] = (symbol, link)
        self._oid_seq[oid] = len(self._oid_seq)
        return entry

    def _link_for(self, order: Order) -> _Link:
        """The wire identity of a backend order (registering orders placed behind our back)."""
        link = self._link_of.get((order.symbol, order.client_id))
        if link is None:
            return self._register(order.symbol, order.client_id, order.client_id, minted=False)
        return self._links[(order.symbol, link)]

    def _backend_order(self, symbol: str, entry: _Link) -> Order | None:
        return self.backend.fetch_order(symbol, entry.backend_cid)

    def _mint_link(self) -> str:
        self._next_link += 1
        return f"loopback-{self._next_link}"

    # -- closed PnL ------------------------------------------------------------------------

    def _record_close(
        self, order: Order, closed: Decimal, entry: Decimal, leverage: Decimal, now: int
    ) -> None:
        exit_price = order.average_price or entry
        sign = 1 if order.side is OrderSide.SELL else -1  # a sell closes a long
        wire = self._link_for(order)
        self._closed_pnl.append(
            {
                "symbol": self._sid(order.symbol),
                "orderId": wire.order_id,
                "side": wire_side(order.side),
                "qty": plain(closed),
                "orderPrice": plain(exit_price),
                "orderType": "Market",
                "execType": "Trade",
                "closedSize": plain(closed),
                "cumEntryValue": money(entry * closed),
                "avgEntryPrice": plain(entry),
                "cumExitValue": money(exit_price * closed),
                "avgExitPrice": plain(exit_price),
                "closedPnl": money(sign * (exit_price - entry) * closed),
                "fillCount": "1",
                "leverage": plain(leverage),
                "createdTime": str(order.timestamp_ms or now),
                "updatedTime": str(order.timestamp_ms or now),
            }
        )

    def _sync_closed_pnl(self, now: int) -> None:
        """Book triggered reduce-only/close-position orders as closed PnL, with the entry
        price last seen (a reduction does not move a one-way position's entry)."""
        for (symbol, _link), entry in list(self._links.items()):
            key = (symbol, entry.backend_cid)
            if key in self._pnl_seen:
                continue
            order = self._backend_order(symbol, entry)
            if order is None or order.status is not OrderStatus.FILLED:
                continue
            self._pnl_seen.add(key)
            protective = order.reduce_only or order.close_position
            seen = self._entry_seen.get(symbol)
            if protective and order.type.is_conditional and seen is not None:
                lev = self._leverage_seen.get(symbol, Decimal(1))
                self._record_close(order, order.filled, seen, lev, now)
        for symbol, pos in self._positions().items():
            self._entry_seen[symbol] = pos.entry_price
            self._leverage_seen[symbol] = pos.leverage


@dataclass(frozen=True, slots=True)
class _Link:
    order_id: str  # Bybit's orderId (a UUID), kept across amends
    link: str  # orderLinkId (minted by the server when none was sent)
    backend_cid: str  # the backend order currently behind it
    minted: bool  # the wire shows orderLinkId "" for a minted id


def from_backend(exc: ExchangeError, inst: Instrument | None = None) -> BybitError:
    """Map a :mod:`bot.errors` exception to the Bybit retCode and message a venue would send."""
    raw = getattr(exc, "code", None)
    code = _BINANCE_CODES.get(raw) if isinstance(raw, int) else None
    if code is None:
        code = next((c for cls, c in _CLASS_CODES if isinstance(exc, cls)), None)
    if code is None:
        if isinstance(exc, AuthenticationFailed):
            return BybitError(10003)
        if isinstance(exc, OrderRejected):
            return params_error(str(exc))
        return BybitError(10016, f"{MSG[10016]} {exc}")
    if code == 110094:
        limit = plain(inst.min_notional) if inst is not None else "?"
        return BybitError(code, MSG[code].format(limit=limit))
    if code == 10001:
        return params_error(str(exc))
    return BybitError(code)


def check_order_numbers(
    inst: Instrument,
    qty: Decimal | None,
    price: Decimal | None,
    trigger: Decimal | None,
    notional_price: Decimal | None,
    *,
    exempt: bool,
    market: bool = False,
) -> None:
    """Bybit's instrument filters: price/trigger on ``tickSize``, qty on ``qtyStep`` and above
    ``minOrderQty`` (10001), a market or conditional-market order at most ``maxMktOrderQty``
    (10001, reduce-only too), notional at least ``minNotionalValue`` unless reduce-only (110094)."""
    for name, value in (("price", price), ("triggerPrice", trigger)):
        if value is None:
            continue
        if value <= 0 or value % inst.tick_size != 0:
            raise params_error(f"{name} invalid: {plain(value)} is not a multiple of the tick")
    if qty is None:
        return
    if qty <= 0 or decimals(qty) > decimals(inst.step_size) or qty % inst.step_size != 0:
        raise params_error(f"Qty invalid: {plain(qty)} is not a multiple of the qty step")
    if qty < inst.min_qty:
        raise BybitError(10001, "The number of contracts exceeds minimum limit allowed")
    if market and inst.max_order_qty is not None and qty > inst.max_order_qty:
        raise BybitError(10001, "The number of contracts exceeds maximum limit allowed: too large")
    if not exempt and notional_price is not None and qty * notional_price < inst.min_notional:
        raise BybitError(110094, MSG[110094].format(limit=plain(inst.min_notional)))


def wire_side(side: OrderSide) -> str:
    return "Buy" if side is OrderSide.BUY else "Sell"


def parse_side(req: BybitReq) -> OrderSide:
    raw = req.need("side")
    if raw not in ("Buy", "Sell"):
        raise params_error(f"side invalid: {raw}")
    return OrderSide.BUY if raw == "Buy" else OrderSide.SELL


def conditional_type(side: OrderSide, direction: int) -> OrderType:
    """A Bybit conditional order has no stop/take-profit type: side and direction decide.

    Falling (2) sell or rising (1) buy is a stop (it fires against the position); the other two
    are take-profits. Same rule as :func:`loopback_core.fires_at`.
    """
    stop = (side is OrderSide.SELL) == (direction == 2)
    return OrderType.STOP_MARKET if stop else OrderType.TAKE_PROFIT_MARKET


def direction_of(order_type: OrderType, side: OrderSide) -> int:
    falls = (order_type is OrderType.STOP_MARKET) == (side is OrderSide.SELL)
    return 2 if falls else 1
