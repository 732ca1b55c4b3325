"""Binance USD-M wire basics shared by the Binance route modules: codes and messages, request
parameters, signing, symbol lookup, symbol filters, and the JSON error envelope.

Binance references: https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info
(signing, recvWindow), .../error-code (codes), .../trade/rest-api (order and algo-order shapes),
https://developers.binance.com/docs/derivatives/change-log (2025-12-09: conditional orders
moved to the Algo Order API).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from bot.clock import Clock
from bot.domain.enums import MarginMode, OrderSide, OrderStatus, OrderType
from bot.domain.instrument import Instrument
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
    plain,
)

_s = plain
_decimals = decimals

# Canonical Binance messages; ccxt matches some of them verbatim (e.g. -4046).
MSG: dict[int, str] = {
    -1003: "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1116: "Invalid orderType.",
    -1121: "Invalid symbol.",
    -1122: "Invalid symbol status.",
    -1131: "recvWindow must be less than 60000",
    -2011: "Unknown order sent.",
    -2013: "Order does not exist.",
    -2014: "API-key format invalid.",
    -2015: "Invalid API-key, IP, or permissions for action.",
    -2019: "Margin is insufficient.",
    -2021: "Order would immediately trigger.",
    -2022: "ReduceOnly Order is rejected.",
    -4003: "Quantity less than or equal to zero.",
    -4004: "Quantity less than minimum quantity.",
    -4005: "Quantity greater than max quantity.",
    -4014: "Price not increased by tick size.",
    -4015: "Client order id is not valid.",
    -4023: "Quantity not increased by step size.",
    -4046: "No need to change margin type.",
    -4059: "No need to change position side.",
    -4061: "Order's position side does not match user's setting.",
    -4067: "Position side cannot be changed if there exists open orders.",
    -4068: "Position side cannot be changed if there exists position.",
    -4116: "ClientOrderId is duplicated.",
    -4120: (
        "Order type not supported for this endpoint. Please use the Algo Order API endpoints "
        "instead."
    ),
}
# Backend codes whose Binance text is fixed; other backend errors keep the backend's message.
_CANONICAL_BACKEND = {-1111, -2013, -2019, -2022, -4003, -4014, -4023, -4116}
_CLASS_CODES: tuple[tuple[type[ExchangeError], int], ...] = (
    (InsufficientMargin, -2019),
    (ReduceOnlyRejected, -2022),
    (DuplicateClientId, -4116),
    (OrderNotFound, -2013),
    (InvalidQuantity, -1013),
    (OrderRejected, -2010),  # NEW_ORDER_REJECTED
)
_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")  # Binance newClientOrderId rule
_NUMBER = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,20})?$")
_INTERVAL = re.compile(r"^([1-9][0-9]?)([mhdwM])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "M": 2_592_000_000}
# Refused on /fapi/v1/order since 2025-12-09 (-4120); the backend knows the two *_MARKET ones.
_CONDITIONAL_TYPES = {
    "STOP",
    "STOP_MARKET",
    "TAKE_PROFIT",
    "TAKE_PROFIT_MARKET",
    "TRAILING_STOP_MARKET",
}
_ALGO_TYPES = {
    "STOP_MARKET": OrderType.STOP_MARKET,
    "TAKE_PROFIT_MARKET": OrderType.TAKE_PROFIT_MARKET,
}
_REGULAR_TYPES = {"MARKET": OrderType.MARKET, "LIMIT": OrderType.LIMIT}
_WIRE_TYPE = {t: name for name, t in {**_REGULAR_TYPES, **_ALGO_TYPES}.items()}
_FINAL = (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)
_REGULAR_STATUS = dict(zip(_FINAL, ("FILLED", "CANCELED", "REJECTED"), strict=True))
# A triggered algo order is FINISHED; its fill lives on the MARKET order it became.
_ALGO_STATUS = dict(zip(_FINAL, ("FINISHED", "CANCELED", "REJECTED"), strict=True))
_ACTUAL_ID_BASE = 8_000_000_000  # ids the server mints itself (triggered algo orders)


class BinanceError(WireError):
    """A Binance JSON error reply: ``{"code": code, "msg": msg}`` with an HTTP status."""

    def __init__(self, code: int, msg: str | None = None, status: int = 400) -> None:
        super().__init__(code, msg if msg is not None else MSG.get(code, "Unknown error."), status)


@dataclass(frozen=True, slots=True)
class _Req:
    params: dict[str, str]
    now_ms: int

    def get(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value not in (None, "") else None

    def need(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise BinanceError(
                -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            )
        return value

    def dec(self, name: str) -> Decimal | None:
        raw = self.get(name)
        if raw is None:
            return None
        if not _NUMBER.match(raw):
            raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.")
        return Decimal(raw)

    def flag(self, name: str) -> bool:
        raw = (self.get(name) or "false").lower()
        if raw not in ("true", "false"):
            raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.")
        return raw == "true"

    def int_(self, name: str, default: int | None = None) -> int | None:
        raw = self.get(name)
        if raw is None:
            return default
        if not raw.lstrip("-").isdigit():
            raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.")
        return int(raw)


@dataclass(frozen=True, slots=True)
class _IdEntry:
    symbol: str
    client_id: str
    exchange_id: str
    kind: str  # "regular" | "algo" | "actual" (the market order a triggered algo order became)


def _num(x: Decimal) -> int | float:
    """A JSON number, for the few endpoints (leverageBracket) that send numbers."""
    return int(x) if x == x.to_integral_value() else float(x)


def _from_backend(exc: ExchangeError, inst: Instrument | None = None) -> BinanceError:
    """Map a :mod:`bot.errors` exception to the Binance code and message a venue would send."""
    code = getattr(exc, "code", None)
    if not isinstance(code, int):
        code = next((c for cls, c in _CLASS_CODES if isinstance(exc, cls)), None)
    if code is None:
        if isinstance(exc, AuthenticationFailed):
            return BinanceError(-2015, status=401)
        return BinanceError(-1000, f"An unknown error occured while processing the request. {exc}")
    if code == -4164 and inst is not None:
        return BinanceError(code, _min_notional_msg(inst))
    return BinanceError(code, MSG[code] if code in _CANONICAL_BACKEND else str(exc))


def _min_notional_msg(inst: Instrument) -> str:
    limit = _s(inst.min_notional)
    return f"Order's notional must be no smaller than {limit} (unless you choose reduce only)."


class BinanceBase(LoopbackServer):
    """Binance's side of the shared pipeline: form/query parameters, ``X-MBX-APIKEY`` + HMAC
    signing, ``{"code", "msg"}`` errors, and the state the route modules share."""

    venue = "binance"

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
        self.dual_side_position = False
        # A delisting, as the venue shows it: exchangeInfo `status` per contract (default
        # TRADING; any other refuses its orders with -1122), `deliveryDate` per contract
        # (default 2100-01-01: none scheduled), and the contracts it no longer lists at all
        # (absent from exchangeInfo, -1121 to every request naming them).
        self.market_status: dict[str, str] = {}
        self.delivery_dates: dict[str, int] = {}
        self.delisted: set[str] = set()
        # The spot wallet (binance_spot): asset -> (free, locked), set by tests.
        self.spot_balances: dict[str, tuple[Decimal, Decimal]] = {}
        self.api_restrictions: dict[str, bool] = {
            "ipRestrict": True,
            "enableReading": True,
            "enableFutures": True,
            "enableSpotAndMarginTrading": False,
            "enableWithdrawals": False,
            "enableInternalTransfer": False,
            "permitsUniversalTransfer": False,
            "enableMargin": False,
            "enableVanillaOptions": False,
            "enablePortfolioMarginTrading": False,
        }
        self._ids: dict[int, _IdEntry] = {}
        self._id_of: dict[_IdEntry, int] = {}
        self._next_id = _ACTUAL_ID_BASE
        self._extras: dict[tuple[str, str, str], dict[str, Json]] = {}
        self._margin_known: dict[str, MarginMode] = {}
        self._margin_guess = MarginMode.CROSS  # Binance's default for a new account
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
        # Binance: a parameter present in both query string and body is taken from the query.
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(query, keep_blank_values=True))
        return params

    def _request(self, params: dict[str, Any], now_ms: int) -> _Req:
        return _Req(params, now_ms)

    def _success(self, payload: Json, now: int) -> Reply:
        return json_reply(200, payload)

    def _error(self, err: WireError) -> Reply:
        return json_reply(err.status, {"code": err.code, "msg": err.msg}, code=err.code)

    def _from_backend(self, exc: ExchangeError, params: Mapping[str, Any]) -> WireError:
        return _from_backend(exc, self._maybe_instrument(params))

    def _fault_reply(self, fault: Fault) -> Reply:
        if fault.kind == "timestamp":
            return self._error(BinanceError(-1021))
        retry = () if fault.retry_after is None else (("Retry-After", str(fault.retry_after)),)
        if fault.kind == "ip_ban":
            # 418 "IP has been auto-banned for continuing to send requests after receiving 429
            # codes"; Retry-After says when the ban is over (general-info "LIMITS")
            msg = "Way too many requests; IP(127.0.0.1) banned. Please use the websocket."
            return json_reply(418, {"code": -1003, "msg": msg}, retry, code=-1003)
        return json_reply(429, {"code": -1003, "msg": MSG[-1003]}, retry, code=-1003)

    def _not_found(self, method: str, path: str) -> Reply:
        # Loud on purpose: a code ccxt does not know becomes a plain ExchangeError.
        msg = f"loopback server: {method} {path} is not implemented"
        return json_reply(404, {"code": -5000, "msg": msg}, code=-5000)

    def _internal_error(self, exc: Exception) -> Reply:
        msg = f"loopback internal error: {exc!r}"
        return json_reply(500, {"code": -5999, "msg": msg}, code=-5999)

    def _authenticate(
        self,
        params: dict[str, Any],
        query: str,
        body: str,
        headers: Mapping[str, str],
        now: int,
    ) -> None:
        """Binance SIGNED endpoint checks: key header, timestamp window, HMAC-SHA256 signature."""
        api_key = headers.get("x-mbx-apikey")
        if not api_key:
            raise BinanceError(-2014, status=401)
        if not hmac.compare_digest(api_key, self._key):
            raise BinanceError(-2015, status=401)
        req = _Req(params, now)
        timestamp = req.int_("timestamp")
        if timestamp is None:
            req.need("timestamp")
        recv_window = req.int_("recvWindow", 5000)
        assert timestamp is not None
        assert recv_window is not None
        if recv_window > 60000:
            raise BinanceError(-1131)
        # https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info
        # "timestamp < serverTime + 1000 and serverTime - timestamp <= recvWindow"
        if not (timestamp < now + 1000 and now - timestamp <= recv_window):
            raise BinanceError(-1021)
        signature = req.need("signature")
        # The signature covers the query string followed by the body, minus the signature.
        payload = "".join(
            "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))
            for raw in (query, body)
        )
        expected = hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(-1022)

    # -- helpers ---------------------------------------------------------------------------

    def _maybe_instrument(self, params: Mapping[str, Any]) -> Instrument | None:
        sym = self._by_id.get(params.get("symbol", ""))
        return self.backend.instrument(sym) if sym is not None else None

    def _symbol(self, req: _Req) -> str:
        sid = req.need("symbol")
        sym = self._by_id.get(sid)
        if sym is None or sym in self.delisted:
            raise BinanceError(-1121)
        return sym

    def _symbols_of(self, req: _Req) -> list[str]:
        if req.get("symbol") is not None:
            return [self._symbol(req)]
        return [s for s in self._symbols if s not in self.delisted]

    def _trading(self, symbol: str) -> str:
        """``symbol`` when the venue trades it; an order on any other status is refused."""
        if self.market_status.get(symbol, "TRADING") != "TRADING":
            raise BinanceError(-1122)
        return symbol


def _side(req: _Req) -> OrderSide:
    raw = req.need("side").upper()
    if raw not in ("BUY", "SELL"):
        raise BinanceError(-1117, "Invalid side.")
    return OrderSide.BUY if raw == "BUY" else OrderSide.SELL


def _check_filters(
    inst: Instrument,
    qty: Decimal | None,
    price: Decimal | None,
    trigger: Decimal | None,
    notional_price: Decimal | None,
    *,
    exempt: bool,
    market: bool = False,
) -> None:
    """Binance's symbol filters, checked before the order reaches the backend.

    Too many decimals: -1111; off the tick: -4014; off the step: -4023; zero quantity: -4003;
    below ``minQty``: -4004; a market or stop-market order above ``MARKET_LOT_SIZE.maxQty``
    (reduce-only too): -4005; below ``MIN_NOTIONAL`` (reduce-only and closePosition exempt): -4164.
    """
    for value in (price, trigger):
        if value is None:
            continue
        if value <= 0:
            raise BinanceError(-4001, "Price less than 0.")
        if _decimals(value) > _decimals(inst.tick_size):
            raise BinanceError(-1111)
        if value % inst.tick_size != 0:
            raise BinanceError(-4014)
    if qty is None:
        return
    if qty <= 0:
        raise BinanceError(-4003)
    if _decimals(qty) > _decimals(inst.step_size):
        raise BinanceError(-1111)
    if qty % inst.step_size != 0:
        raise BinanceError(-4023)
    if qty < inst.min_qty:
        raise BinanceError(-4004)
    if market and inst.max_order_qty is not None and qty > inst.max_order_qty:
        raise BinanceError(-4005)
    if not exempt and notional_price is not None and qty * notional_price < inst.min_notional:
        raise BinanceError(-4164, _min_notional_msg(inst))


def _money(x: Decimal) -> str:
    return _s(x.quantize(Decimal("0.00000001")))


def _max_notional(inst: Instrument, leverage: Decimal) -> Decimal:
    """Largest notional Binance allows at ``leverage`` (``maxNotionalValue``)."""
    caps = [b.notional_cap for b in inst.brackets if b.max_leverage >= leverage]
    return max(caps) if caps else inst.brackets[0].notional_cap
