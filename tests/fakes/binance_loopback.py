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
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MethodType
from typing import TYPE_CHECKING, Any, Literal, cast, get_args
from urllib.parse import parse_qsl, urlsplit

from bot.clock import Clock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderStatus, OrderType
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.domain.position import Position
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

if TYPE_CHECKING:
    import ccxt

FaultKind = Literal[
    "timeout",
    "http_500",
    "http_503",
    "rate_limit",
    "timestamp",
    "accept_then_drop",
    # garbled replies: the request IS processed, the answer is damaged on the way back
    "garbled_json",
    "html_200",
    "empty_list",
    "null_fields",
    "json_string",
    "missing_fields",
]
# Fields a ``null_fields`` fault sets to null in every object of a JSON reply.
NULLED_FIELDS = frozenset(
    {
        "positionAmt",
        "entryPrice",
        "markPrice",
        "unRealizedProfit",
        "liquidationPrice",
        "isolatedWallet",
        "walletBalance",
        "availableBalance",
        "balance",
        "origQty",
        "quantity",
        "stopPrice",
        "triggerPrice",
        "status",
        "algoStatus",
        "side",
    }
)
CandleKind = Literal["trade", "mark"]
CandleRow = tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]
Json = Any
ZERO = Decimal(0)

# Canonical Binance messages; ccxt matches some of them verbatim (e.g. -4046).
MSG: dict[int, str] = {
    -1003: "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute.",
    -1021: "Timestamp for this request is outside of the recvWindow.",
    -1022: "Signature for this request is not valid.",
    -1111: "Precision is over the maximum defined for this asset.",
    -1116: "Invalid orderType.",
    -1121: "Invalid symbol.",
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


class BinanceError(Exception):
    """A Binance JSON error reply: ``{"code": code, "msg": msg}`` with an HTTP status."""

    def __init__(self, code: int, msg: str | None = None, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg if msg is not None else MSG.get(code, "Unknown error.")
        self.status = status


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure served instead of (or after) the next ``times`` requests to ``method path``.

    ``timeout``: the request is never processed; the connection is held ``timeout_hold_s``
    seconds (longer than the client's timeout) and closed. ``http_500``/``http_503``: an HTML
    error page, not processed. ``rate_limit``: HTTP 429, code -1003, a ``Retry-After`` header
    when ``retry_after`` (seconds) is set, not processed. ``timestamp``: -1021, not processed.
    ``accept_then_drop``: processed by the backend, then the connection is closed unanswered.
    Garbled replies (processed by the backend, then damaged, status 200): ``garbled_json`` a
    truncated JSON body, ``html_200`` an HTML page, ``empty_list`` ``[]``, ``null_fields`` the
    real JSON with the fields of :data:`NULLED_FIELDS` set to null, ``json_string`` a bare JSON
    string (``"OK"``), ``missing_fields`` every object of the real JSON cut to its ``symbol``.
    """

    path: str
    method: str = "POST"
    _: KW_ONLY
    kind: FaultKind
    retry_after: int | None = None
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"Fault.kind {self.kind!r} is not one of {get_args(FaultKind)}")
        if self.times < 1:
            raise ValueError(f"Fault.times must be >= 1, got {self.times}")
        if not self.path.startswith("/"):
            raise ValueError(f"Fault.path must start with '/', got {self.path!r}")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server saw it. ``params`` merges query and body; the signature is
    redacted. ``status`` is the HTTP status sent, ``None`` when the connection was dropped."""

    method: str
    path: str
    params: dict[str, str]
    status: int | None = None
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


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


@dataclass(slots=True)
class _Pending:
    fault: Fault
    remaining: int


@dataclass(frozen=True, slots=True)
class _IdEntry:
    symbol: str
    client_id: str
    exchange_id: str
    kind: str  # "regular" | "algo" | "actual" (the market order a triggered algo order became)


def _s(x: Decimal) -> str:
    """Plain decimal text (no exponent), as Binance sends numbers in strings."""
    return "0" if x == 0 else format(x.normalize(), "f")


def _num(x: Decimal) -> int | float:
    """A JSON number, for the few endpoints (leverageBracket) that send numbers."""
    return int(x) if x == x.to_integral_value() else float(x)


def _decimals(x: Decimal) -> int:
    exponent = x.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _purpose(order_type: OrderType, reduce_only: bool, close_position: bool) -> OrderPurpose:
    """The wire carries no purpose; infer the one :class:`OrderRequest` requires."""
    protective = reduce_only or close_position
    if protective and order_type is OrderType.STOP_MARKET:
        return OrderPurpose.STOP_LOSS
    if protective and order_type is OrderType.TAKE_PROFIT_MARKET:
        return OrderPurpose.TAKE_PROFIT
    return OrderPurpose.REDUCE if protective else OrderPurpose.ENTRY


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


def _json(status: int, payload: Json, headers: tuple[tuple[str, str], ...] = ()) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), headers=headers)


def _error_reply(err: BinanceError) -> _Reply:
    return _json(err.status, {"code": err.code, "msg": err.msg})


def _html(status: int, title: str) -> _Reply:
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return _Reply(status, page.encode(), "text/html")


def _garbled_json(reply: _Reply) -> _Reply:
    return _Reply(200, reply.body[: max(1, len(reply.body) // 2)])


def _html_200(reply: _Reply) -> _Reply:
    return _html(200, "Service notice")


def _empty_list(reply: _Reply) -> _Reply:
    return _Reply(200, b"[]")


def _null_fields(reply: _Reply) -> _Reply:
    def scrub(value: Json) -> Json:
        if isinstance(value, dict):
            return {k: None if k in NULLED_FIELDS else scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return _Reply(200, json.dumps(scrub(json.loads(reply.body))).encode())


def _json_string(reply: _Reply) -> _Reply:
    return _Reply(200, b'"OK"')


def _missing_fields(reply: _Reply) -> _Reply:
    def cut(value: Json) -> Json:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k == "symbol"}
        if isinstance(value, list):
            return [cut(v) for v in value]
        return value

    return _Reply(200, json.dumps(cut(json.loads(reply.body))).encode())


_GARBLERS: dict[str, Callable[[_Reply], _Reply]] = {
    "garbled_json": _garbled_json,
    "html_200": _html_200,
    "empty_list": _empty_list,
    "null_fields": _null_fields,
    "json_string": _json_string,
    "missing_fields": _missing_fields,
}


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, lets :class:`LoopbackBinance` answer it, writes (or drops) the reply."""

    server_version = "loopback-binance"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; :attr:`LoopbackBinance.requests` records them."""

    def _serve(self, method: str) -> None:
        app = cast(_Server, self.server).app
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            url = urlsplit(self.path)
            reply = app.handle(method, url.path, url.query, body, self.headers.get("X-MBX-APIKEY"))
            if reply is None:  # a dropped connection: close without a status line
                self.close_connection = True
                return
            self.send_response(reply.status)
            self.send_header("Content-Type", f"{reply.content_type};charset=UTF-8")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout expired): nothing left to answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: LoopbackBinance


class LoopbackBinance:
    """Binance USD-M REST on ``127.0.0.1``, backed by an :class:`ExchangePort`.

    ``start()`` binds a free port (``base_url`` then is ``http://127.0.0.1:<port>``); point a ccxt
    instance at it with :func:`point_ccxt_at`. Requests are served on threads; every request that
    touches the backend holds :attr:`lock`, so hold it too when driving the backend from another
    thread while requests are in flight. Usable as a context manager.
    """

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
        if not symbols:
            raise ValueError("LoopbackBinance needs at least one symbol")
        self.backend = backend
        self.clock = clock
        self.server_time_offset_ms = server_time_offset_ms
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []  # unexpected exceptions inside the server (should stay empty)
        self.lock = threading.RLock()
        self.timeout_hold_s = 2.5  # how long a "timeout" fault holds the connection
        self.dual_side_position = False
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
        self._key = api_key
        self._secret = api_secret.encode()
        self._symbols = list(symbols)
        self._by_id: dict[str, str] = {}
        for sym in self._symbols:
            inst = backend.instrument(sym)
            self._by_id[inst.base + inst.quote] = sym
        self._faults: list[_Pending] = []
        self._meta_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._candles: dict[tuple[str, CandleKind], list[CandleRow]] = {}
        self._ids: dict[int, _IdEntry] = {}
        self._id_of: dict[_IdEntry, int] = {}
        self._next_id = _ACTUAL_ID_BASE
        self._extras: dict[tuple[str, str, str], dict[str, Json]] = {}
        self._margin_known: dict[str, MarginMode] = {}
        self._margin_guess = MarginMode.CROSS  # Binance's default for a new account
        self._routes = self._route_table()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("LoopbackBinance.base_url: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Bind ``127.0.0.1`` on a free port and serve on a daemon thread."""
        if self._server is not None:
            raise RuntimeError("LoopbackBinance already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.app = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="loopback-binance"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; connections held by a ``timeout`` fault are released."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LoopbackBinance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ---------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Queue ``fault`` for the next ``fault.times`` requests matching its method and path."""
        with self._meta_lock:
            self._faults.append(_Pending(fault, fault.times))

    def set_candles(self, symbol: str, kind: CandleKind, rows: Sequence[CandleRow]) -> None:
        """Serve ``rows`` (open ms, open, high, low, close, volume) on ``/fapi/v1/klines``
        (``kind="trade"``) or ``/fapi/v1/markPriceKlines`` (``kind="mark"``)."""
        if symbol not in self._symbols:
            raise ValueError(f"set_candles: unknown symbol {symbol!r}; known: {self._symbols}")
        if kind not in get_args(CandleKind):
            raise ValueError(f"set_candles: kind {kind!r} is not 'trade' or 'mark'")
        for i in range(1, len(rows)):
            if rows[i][0] <= rows[i - 1][0]:
                raise ValueError(f"set_candles {symbol} {kind}: row {i} open time not increasing")
        self._candles[(symbol, kind)] = list(rows)

    def clear_faults(self) -> None:
        """Drop every fault still queued."""
        with self._meta_lock:
            self._faults.clear()

    def calls(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests to ``path`` (and ``method``, when given), oldest first."""
        with self._meta_lock:
            return [r for r in self.requests if r.path == path and method in (None, r.method)]

    def server_time_ms(self) -> int:
        return self.clock.now_ms() + self.server_time_offset_ms

    # -- request pipeline ------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, body: str, api_key: str | None
    ) -> _Reply | None:
        """Answer one HTTP request; ``None`` means close the connection without a reply."""
        # Binance: a parameter present in both query string and body is taken from the query.
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(query, keep_blank_values=True))
        fault = self._take_fault(method, path)
        kind = fault.kind if fault is not None else None
        reply: _Reply | None
        if kind == "timeout":
            self._record(method, path, params, None, kind)
            self._stopping.wait(self.timeout_hold_s)
            return None
        if kind == "http_500":
            reply = _html(500, "500 Internal Server Error")
        elif kind == "http_503":
            reply = _html(503, "503 Service Temporarily Unavailable")
        elif kind == "rate_limit" and fault is not None:
            retry = () if fault.retry_after is None else (("Retry-After", str(fault.retry_after)),)
            reply = _json(429, {"code": -1003, "msg": MSG[-1003]}, retry)
        elif kind == "timestamp":
            reply = _error_reply(BinanceError(-1021))
        else:
            reply = self._process(method, path, params, query, body, api_key)
        if kind == "accept_then_drop":
            self._record(method, path, params, None, kind)
            return None
        if kind in _GARBLERS and reply.status == 200:
            reply = _GARBLERS[kind](reply)
        self._record(method, path, params, reply.status, kind)
        return reply

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._meta_lock:
            for pending in self._faults:
                if pending.fault.path == path and pending.fault.method.upper() == method:
                    pending.remaining -= 1
                    if pending.remaining <= 0:
                        self._faults.remove(pending)
                    return pending.fault
        return None

    def _record(
        self, method: str, path: str, params: dict[str, str], status: int | None, fault: str | None
    ) -> None:
        shown = {k: ("<redacted>" if k == "signature" else v) for k, v in params.items()}
        with self._meta_lock:
            self.requests.append(RecordedRequest(method, path, shown, status, fault))

    def _process(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        query: str,
        body: str,
        api_key: str | None,
    ) -> _Reply:
        route = self._routes.get((method, path))
        if route is None:
            # Loud on purpose: a code ccxt does not know becomes a plain ExchangeError.
            msg = f"loopback server: {method} {path} is not implemented"
            return _json(404, {"code": -5000, "msg": msg})
        fn, signed = route
        try:
            now = self.server_time_ms()
            if signed:
                self._authenticate(params, query, body, api_key, now)
            with self.lock:
                return _json(200, fn(_Req(params, now)))
        except BinanceError as err:
            return _error_reply(err)
        except ExchangeError as exc:
            return _error_reply(_from_backend(exc, self._maybe_instrument(params)))
        except Exception as exc:  # a bug here or in the backend: make it visible, not retriable
            self.errors.append(f"{method} {path}: {exc!r}")
            return _json(500, {"code": -5999, "msg": f"loopback internal error: {exc!r}"})

    def _authenticate(
        self, params: dict[str, str], query: str, body: str, api_key: str | None, now: int
    ) -> None:
        """Binance SIGNED endpoint checks: key header, timestamp window, HMAC-SHA256 signature."""
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

    def _maybe_instrument(self, params: dict[str, str]) -> Instrument | None:
        sym = self._by_id.get(params.get("symbol", ""))
        return self.backend.instrument(sym) if sym is not None else None

    def _symbol(self, req: _Req) -> str:
        sid = req.need("symbol")
        sym = self._by_id.get(sid)
        if sym is None:
            raise BinanceError(-1121)
        return sym

    def _symbols_of(self, req: _Req) -> list[str]:
        return [self._symbol(req)] if req.get("symbol") is not None else list(self._symbols)

    def _sid(self, symbol: str) -> str:
        inst = self.backend.instrument(symbol)
        return inst.base + inst.quote

    def _mark(self, symbol: str) -> Decimal | None:
        try:
            return self.backend.fetch_mark_price(symbol)
        except ExchangeError:
            return None

    def _positions(self) -> dict[str, Position]:
        return {s: p for s, p in self.backend.fetch_positions(self._symbols).items() if p.is_open}

    # -- routes ----------------------------------------------------------------------------

    def _route_table(self) -> dict[tuple[str, str], tuple[Callable[[_Req], Json], bool]]:
        public: dict[tuple[str, str], Callable[[_Req], Json]] = {
            ("GET", "/fapi/v1/ping"): lambda req: {},
            ("GET", "/fapi/v1/time"): lambda req: {"serverTime": req.now_ms},
            ("GET", "/fapi/v1/exchangeInfo"): self._exchange_info,
            ("GET", "/fapi/v1/premiumIndex"): self._premium_index,
            ("GET", "/fapi/v1/fundingInfo"): self._funding_info,
            ("GET", "/fapi/v1/fundingRate"): lambda req: [],
            ("GET", "/fapi/v1/ticker/price"): self._ticker_price,
            ("GET", "/fapi/v1/ticker/24hr"): self._ticker_24hr,
            ("GET", "/fapi/v1/klines"): lambda req: self._klines(req, "trade"),
            ("GET", "/fapi/v1/markPriceKlines"): lambda req: self._klines(req, "mark"),
        }
        signed: dict[tuple[str, str], Callable[[_Req], Json]] = {
            ("GET", "/fapi/v1/leverageBracket"): self._leverage_bracket,
            ("GET", "/fapi/v1/commissionRate"): self._commission_rate,
            ("GET", "/fapi/v2/account"): self._account,
            ("GET", "/fapi/v3/account"): self._account,
            ("GET", "/fapi/v2/balance"): self._balance,
            ("GET", "/fapi/v3/balance"): self._balance,
            ("GET", "/fapi/v2/positionRisk"): lambda req: self._position_risk(req, v2=True),
            ("GET", "/fapi/v3/positionRisk"): lambda req: self._position_risk(req, v2=False),
            ("GET", "/fapi/v1/symbolConfig"): self._symbol_config,
            ("POST", "/fapi/v1/leverage"): self._set_leverage,
            ("POST", "/fapi/v1/marginType"): self._set_margin_type,
            ("GET", "/fapi/v1/positionSide/dual"): lambda req: {
                "dualSidePosition": self.dual_side_position
            },
            ("POST", "/fapi/v1/positionSide/dual"): self._set_dual,
            ("GET", "/fapi/v1/multiAssetsMargin"): lambda req: {"multiAssetsMargin": False},
            ("GET", "/sapi/v1/account/apiRestrictions"): lambda req: {
                **self.api_restrictions,
                "createTime": req.now_ms,
            },
            ("POST", "/fapi/v1/order"): self._new_order,
            ("GET", "/fapi/v1/order"): self._query_order,
            ("DELETE", "/fapi/v1/order"): self._cancel_order,
            ("GET", "/fapi/v1/openOrders"): lambda req: self._open_orders(req, algo=False),
            ("DELETE", "/fapi/v1/allOpenOrders"): lambda req: self._cancel_all(req, algo=False),
            ("POST", "/fapi/v1/algoOrder"): self._new_algo_order,
            ("GET", "/fapi/v1/algoOrder"): self._query_algo_order,
            ("DELETE", "/fapi/v1/algoOrder"): self._cancel_algo_order,
            ("GET", "/fapi/v1/openAlgoOrders"): lambda req: self._open_orders(req, algo=True),
            ("DELETE", "/fapi/v1/algoOpenOrders"): lambda req: self._cancel_all(req, algo=True),
        }
        table = {key: (fn, False) for key, fn in public.items()}
        table.update({key: (fn, True) for key, fn in signed.items()})
        return table

    # -- market data -----------------------------------------------------------------------

    def _exchange_info(self, req: _Req) -> Json:
        quotes = sorted({self.backend.instrument(s).quote for s in self._symbols})
        return {
            "timezone": "UTC",
            "serverTime": req.now_ms,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 2400,
                },
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [
                {"asset": q, "marginAvailable": True, "autoAssetExchange": "0"} for q in quotes
            ],
            "symbols": [self._symbol_info(s) for s in self._symbols],
        }

    def _symbol_info(self, symbol: str) -> Json:
        inst = self.backend.instrument(symbol)
        sid, tick, step = inst.base + inst.quote, _s(inst.tick_size), _s(inst.step_size)
        lot = {"minQty": _s(inst.min_qty), "maxQty": "10000000", "stepSize": step}
        return {
            "symbol": sid,
            "pair": sid,
            "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000,
            "onboardDate": 1569398400000,
            "status": "TRADING",
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": inst.base,
            "quoteAsset": inst.quote,
            "marginAsset": inst.quote,
            "pricePrecision": _decimals(inst.tick_size),
            "quantityPrecision": _decimals(inst.step_size),
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": [],
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": _s(inst.liquidation_fee),
            "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": _s(inst.min_price) if inst.min_price is not None else tick,
                    "maxPrice": _s(inst.max_price) if inst.max_price is not None else "100000000",
                    "tickSize": tick,
                },
                {"filterType": "LOT_SIZE", **lot},
                {"filterType": "MARKET_LOT_SIZE", **lot},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": _s(inst.min_notional)},
                {
                    "filterType": "PERCENT_PRICE",
                    "multiplierUp": "1.0500",
                    "multiplierDown": "0.9500",
                    "multiplierDecimal": "4",
                },
            ],
            "orderTypes": ["LIMIT", "MARKET", *sorted(_CONDITIONAL_TYPES)],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        }

    def _premium_index(self, req: _Req) -> Json:
        rows = []
        for sym in self._symbols_of(req):
            mark = _s(self.backend.fetch_mark_price(sym))  # no mark yet: the backend's error
            funding = self.backend.fetch_funding(sym)
            rows.append(
                {
                    "symbol": self._sid(sym),
                    "markPrice": mark,
                    "indexPrice": mark,
                    "estimatedSettlePrice": mark,
                    "lastFundingRate": _s(funding.rate),
                    "interestRate": "0.00010000",
                    "nextFundingTime": funding.next_settlement_ms or 0,
                    "time": req.now_ms,
                }
            )
        return rows[0] if req.get("symbol") is not None else rows

    def _ticker_price(self, req: _Req) -> Json:
        # The port exposes no last-trade price: the mark stands in for it.
        rows = [
            {
                "symbol": self._sid(s),
                "price": _s(self.backend.fetch_mark_price(s)),
                "time": req.now_ms,
            }
            for s in self._symbols_of(req)
        ]
        return rows[0] if req.get("symbol") is not None else rows

    def _ticker_24hr(self, req: _Req) -> Json:
        rows = []
        for sym in self._symbols_of(req):
            last = _s(self.backend.fetch_mark_price(sym))  # mark as last, see _ticker_price
            rows.append(
                {
                    "symbol": self._sid(sym),
                    **dict.fromkeys(("priceChange", "priceChangePercent", "lastQty"), "0"),
                    **dict.fromkeys(("volume", "quoteVolume"), "0"),
                    **dict.fromkeys(("lastPrice", "openPrice", "highPrice", "lowPrice"), last),
                    "weightedAvgPrice": last,
                    "openTime": req.now_ms - 86_400_000,
                    "closeTime": req.now_ms,
                    "firstId": 0,
                    "lastId": 0,
                    "count": 0,
                }
            )
        return rows[0] if req.get("symbol") is not None else rows

    def _funding_info(self, req: _Req) -> Json:
        return [
            {
                "symbol": self._sid(sym),
                "adjustedFundingRateCap": "0.02000000",
                "adjustedFundingRateFloor": "-0.02000000",
                "fundingIntervalHours": _num(self.backend.fetch_funding(sym).interval_hours),
                "disclaimer": False,
            }
            for sym in self._symbols
        ]

    def _klines(self, req: _Req, kind: CandleKind) -> Json:
        sym = self._symbol(req)
        match = _INTERVAL.match(req.need("interval"))
        if match is None:
            raise BinanceError(-1120, "Invalid interval.")
        step = int(match.group(1)) * _UNIT_MS[match.group(2)]
        rows = self._candles.get((sym, kind), [])
        spacing = min((b[0] - a[0] for a, b in itertools.pairwise(rows)), default=step)
        if spacing != step:
            raise BinanceError(-1120, f"Invalid interval. (loopback {kind} rows are {spacing} ms)")
        limit = min(max(req.int_("limit", 500) or 500, 1), 1500)
        start, end = req.int_("startTime"), req.int_("endTime")
        picked = [
            r
            for r in rows
            if r[0] <= req.now_ms
            and (start is None or r[0] >= start)
            and (end is None or r[0] <= end)
        ]
        picked = picked[:limit] if start is not None else picked[-limit:]
        out = []
        for ts, o, h, low, c, vol in picked:
            volume = _s(vol) if kind == "trade" else "0"
            quote = _s(vol * c) if kind == "trade" else "0"
            out.append(
                [ts, _s(o), _s(h), _s(low), _s(c), volume, ts + step - 1, quote, 0, "0", "0", "0"]
            )
        return out

    # -- account ---------------------------------------------------------------------------

    def _leverage_bracket(self, req: _Req) -> Json:
        rows = []
        for sym in self._symbols_of(req):
            inst = self.backend.instrument(sym)
            brackets = [
                {
                    "bracket": i + 1,
                    "initialLeverage": _num(b.max_leverage),
                    "notionalCap": _num(b.notional_cap),
                    "notionalFloor": _num(b.notional_floor),
                    "maintMarginRatio": _num(b.maint_margin_rate),
                    "cum": float(b.maint_amount),
                }
                for i, b in enumerate(inst.brackets)
            ]
            rows.append({"symbol": inst.base + inst.quote, "brackets": brackets})
        # Binance documents an object (not a list) when a symbol was sent.
        return rows[0] if req.get("symbol") is not None else rows

    def _commission_rate(self, req: _Req) -> Json:
        inst = self.backend.instrument(self._symbol(req))
        return {
            "symbol": inst.base + inst.quote,
            "makerCommissionRate": _s(inst.maker_fee),
            "takerCommissionRate": _s(inst.taker_fee),
        }

    def _position_row(self, sym: str, pos: Position, now: int, *, v2: bool) -> dict[str, Json]:
        inst = self.backend.instrument(sym)
        mark = self._mark(sym) or pos.entry_price
        notional = pos.qty * mark
        bracket = inst.bracket_for(notional)
        maint = abs(notional) * bracket.maint_margin_rate - bracket.maint_amount
        initial = abs(notional) / pos.leverage if pos.leverage > 0 else ZERO
        upnl = pos.unrealized_pnl(mark)
        isolated = pos.is_open and pos.margin_mode is MarginMode.ISOLATED
        row: dict[str, Json] = {
            "symbol": inst.base + inst.quote,
            "positionSide": "BOTH",
            "positionAmt": _s(pos.qty),
            "entryPrice": _s(pos.entry_price),
            "breakEvenPrice": _s(pos.entry_price),
            "markPrice": _s(mark),
            "unRealizedProfit": _money(upnl),
            "liquidationPrice": _s(pos.liquidation_price or ZERO),
            "isolatedMargin": _money(pos.isolated_margin + upnl) if isolated else "0",
            "notional": _money(notional),
            "marginAsset": inst.quote,
            "isolatedWallet": _money(pos.isolated_margin) if isolated else "0",
            "updateTime": now if pos.is_open else 0,
        }
        if v2:  # v2 still carries leverage and margin type; v3 dropped them
            row["leverage"] = str(int(pos.leverage))
            row["marginType"] = "isolated" if pos.margin_mode is MarginMode.ISOLATED else "cross"
            row["isAutoAddMargin"] = "false"
            row["maxNotionalValue"] = _s(_max_notional(inst, pos.leverage))
        else:
            row.update(
                initialMargin=_money(initial),
                maintMargin=_money(maint),
                positionInitialMargin=_money(initial),
                openOrderInitialMargin="0",
                adl=0,
                bidNotional="0",
                askNotional="0",
            )
        return row

    def _position_risk(self, req: _Req, *, v2: bool) -> Json:
        wanted = self._symbols_of(req)
        positions = self._positions()
        rows = []
        for sym in wanted:
            pos = positions.get(sym)
            if pos is None and not v2:
                continue  # v3 lists only symbols with a position
            if pos is None:
                lev = self.backend.fetch_leverage(sym)
                pos = Position(sym, ZERO, ZERO, lev, self._margin_mode(sym))
            rows.append(self._position_row(sym, pos, req.now_ms, v2=v2))
        return rows

    def _wallet(self) -> dict[str, Decimal]:
        bal = self.backend.fetch_balance()
        upnl = maint = isolated = ZERO
        for sym, pos in self._positions().items():
            row = self._position_row(sym, pos, 0, v2=False)
            upnl += Decimal(row["unRealizedProfit"])
            maint += Decimal(row["maintMargin"])
            isolated += Decimal(row["isolatedWallet"])
        margin_balance = bal.wallet + upnl
        return {
            "wallet": bal.wallet,
            "upnl": upnl,
            "margin": margin_balance,
            "maint": maint,
            # Binance: available = margin balance - initial margin; the backend knows available.
            "initial": max(ZERO, margin_balance - bal.available),
            "available": bal.available,
            "cross_wallet": bal.wallet - isolated,
        }

    def _account(self, req: _Req) -> Json:
        w = self._wallet()
        asset = self.backend.fetch_balance().asset
        positions = []
        for sym, pos in self._positions().items():
            row = self._position_row(sym, pos, req.now_ms, v2=False)
            row["unrealizedProfit"] = row.pop("unRealizedProfit")
            positions.append(row)
        return {
            "totalInitialMargin": _money(w["initial"]),
            "totalMaintMargin": _money(w["maint"]),
            "totalWalletBalance": _money(w["wallet"]),
            "totalUnrealizedProfit": _money(w["upnl"]),
            "totalMarginBalance": _money(w["margin"]),
            "totalPositionInitialMargin": _money(w["initial"]),
            "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": _money(w["cross_wallet"]),
            "totalCrossUnPnl": _money(w["upnl"]),
            "availableBalance": _money(w["available"]),
            "maxWithdrawAmount": _money(w["available"]),
            "assets": [
                {
                    "asset": asset,
                    "walletBalance": _money(w["wallet"]),
                    "unrealizedProfit": _money(w["upnl"]),
                    "marginBalance": _money(w["margin"]),
                    "maintMargin": _money(w["maint"]),
                    "initialMargin": _money(w["initial"]),
                    "positionInitialMargin": _money(w["initial"]),
                    "openOrderInitialMargin": "0",
                    "crossWalletBalance": _money(w["cross_wallet"]),
                    "crossUnPnl": _money(w["upnl"]),
                    "availableBalance": _money(w["available"]),
                    "maxWithdrawAmount": _money(w["available"]),
                    "updateTime": req.now_ms,  # ccxt skips assets whose updateTime is 0
                }
            ],
            "positions": positions,
        }

    def _balance(self, req: _Req) -> Json:
        w = self._wallet()
        return [
            {
                "accountAlias": "loopback",
                "asset": self.backend.fetch_balance().asset,
                "balance": _money(w["wallet"]),
                "crossWalletBalance": _money(w["cross_wallet"]),
                "crossUnPnl": _money(w["upnl"]),
                "availableBalance": _money(w["available"]),
                "maxWithdrawAmount": _money(w["available"]),
                "marginAvailable": True,
                "updateTime": req.now_ms,
            }
        ]

    # -- settings --------------------------------------------------------------------------

    def _margin_mode(self, symbol: str) -> MarginMode:
        pos = self._positions().get(symbol)
        if pos is not None:
            self._margin_known[symbol] = pos.margin_mode
            return pos.margin_mode
        return self._margin_known.get(symbol, self._margin_guess)

    def _symbol_config(self, req: _Req) -> Json:
        rows = []
        for sym in self._symbols_of(req):
            inst, lev = self.backend.instrument(sym), self.backend.fetch_leverage(sym)
            mode = self._margin_mode(sym)
            rows.append(
                {
                    "symbol": inst.base + inst.quote,
                    "marginType": "ISOLATED" if mode is MarginMode.ISOLATED else "CROSSED",
                    "isAutoAddMargin": False,
                    "leverage": int(lev),
                    "maxNotionalValue": _s(_max_notional(inst, lev)),
                }
            )
        return rows

    def _set_leverage(self, req: _Req) -> Json:
        sym = self._symbol(req)
        leverage = req.int_("leverage")
        if leverage is None:
            req.need("leverage")
        assert leverage is not None
        if not 1 <= leverage <= 125:
            raise BinanceError(-4028, f"Leverage {leverage} is not valid")
        self.backend.set_leverage(sym, leverage)
        inst = self.backend.instrument(sym)
        return {
            "leverage": leverage,
            "maxNotionalValue": _s(_max_notional(inst, Decimal(leverage))),
            "symbol": inst.base + inst.quote,
        }

    def _set_margin_type(self, req: _Req) -> Json:
        sym = self._symbol(req)
        raw = req.need("marginType").upper()
        modes = {"ISOLATED": MarginMode.ISOLATED, "CROSSED": MarginMode.CROSS}
        if raw not in modes:
            raise BinanceError(-1102, "Invalid marginType.")
        mode = modes[raw]
        self._margin_mode(sym)  # learns the mode of an open position
        if self._margin_known.get(sym) is mode:
            raise BinanceError(-4046)
        # Until the server has set a symbol's mode itself it does not know it (the backend may
        # start isolated): forward the change and let the backend decide.
        self.backend.set_margin_mode(sym, mode)
        # The backend may apply the mode account-wide: other symbols' modes are unknown again.
        self._margin_known = {sym: mode}
        self._margin_guess = mode
        return {"code": 200, "msg": "success"}

    def _set_dual(self, req: _Req) -> Json:
        req.need("dualSidePosition")
        wanted = req.flag("dualSidePosition")
        if wanted == self.dual_side_position:
            raise BinanceError(-4059)
        if self._positions():
            raise BinanceError(-4068)
        if any(self.backend.fetch_open_orders(s) for s in self._symbols):
            raise BinanceError(-4067)
        self.dual_side_position = wanted
        return {"code": 200, "msg": "success"}

    # -- orders ----------------------------------------------------------------------------

    def _new_order(self, req: _Req) -> Json:
        """``POST /fapi/v1/order``: MARKET and LIMIT only since Binance's 2025-12 change."""
        sym = self._symbol(req)
        side = _side(req)
        raw_type = req.need("type").upper()
        if raw_type in _CONDITIONAL_TYPES:
            raise BinanceError(-4120)
        order_type = _REGULAR_TYPES.get(raw_type)
        if order_type is None:
            raise BinanceError(-1116)
        self._check_position_side(req)
        req.need("quantity")
        qty, price = req.dec("quantity"), req.dec("price")
        if order_type is OrderType.LIMIT:
            req.need("price")
            req.need("timeInForce")
        elif price is not None:
            raise BinanceError(-1106, "Parameter 'price' sent when not required.")
        reduce_only = req.flag("reduceOnly")
        inst = self.backend.instrument(sym)
        reference = price if price is not None else self._mark(sym)
        _check_filters(inst, qty, price, None, reference, exempt=reduce_only)
        cid = self._client_id(req, "newClientOrderId")
        order = self._place(cid, sym, side, order_type, qty, reduce_only=reduce_only, price=price)
        self._extras[(sym, cid, order.exchange_id)] = {
            "timeInForce": req.get("timeInForce") or "GTC"
        }
        if (req.get("newOrderRespType") or "ACK").upper() == "ACK":
            # ACK (Binance's default) answers before matching: the fill is not in the reply.
            ack = Order(**{**_fields(order), "status": OrderStatus.OPEN, "filled": ZERO})
            return self._regular_json(ack, with_time=False, average=False)
        return self._regular_json(order, with_time=False)

    def _new_algo_order(self, req: _Req) -> Json:
        """``POST /fapi/v1/algoOrder`` with ``algoType=CONDITIONAL`` (stop/take-profit market)."""
        sym = self._symbol(req)
        side = _side(req)
        if req.need("algoType").upper() != "CONDITIONAL":
            raise BinanceError(-1116, "Invalid algoType.")
        raw_type = req.need("type").upper()
        order_type = _ALGO_TYPES.get(raw_type)
        if order_type is None:
            detail = (
                " (not supported by the loopback backend)" if raw_type in _CONDITIONAL_TYPES else ""
            )
            raise BinanceError(-1116, f"Invalid orderType.{detail}")
        self._check_position_side(req)
        req.need("triggerPrice")
        trigger = req.dec("triggerPrice")
        close_position = req.flag("closePosition")
        reduce_only = req.flag("reduceOnly")
        qty = req.dec("quantity")
        for name in ("quantity", "reduceOnly", "price") if close_position else ("price",):
            if req.get(name) is not None:
                raise BinanceError(-1106, f"Parameter '{name}' sent when not required.")
        if qty is None and not close_position:
            req.need("quantity")
        working = (req.get("workingType") or "CONTRACT_PRICE").upper()
        if working not in ("MARK_PRICE", "CONTRACT_PRICE"):
            raise BinanceError(-1102, "Invalid workingType.")
        inst = self.backend.instrument(sym)
        _check_filters(inst, qty, None, trigger, trigger, exempt=reduce_only or close_position)
        mark = self._mark(sym)
        assert trigger is not None
        if mark is not None and _fires_at(order_type, side, trigger, mark):
            raise BinanceError(-2021)
        cid = self._client_id(req, "clientAlgoId")
        order = self._place(
            cid,
            sym,
            side,
            order_type,
            qty,
            reduce_only=reduce_only,
            trigger=trigger,
            close_position=close_position,
        )
        self._extras[(sym, cid, order.exchange_id)] = {
            "workingType": working,
            "priceProtect": req.flag("priceProtect"),
            "timeInForce": req.get("timeInForce") or "GTC",
        }
        return self._algo_json(order)

    def _place(
        self,
        cid: str,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        qty: Decimal | None,
        *,
        reduce_only: bool,
        price: Decimal | None = None,
        trigger: Decimal | None = None,
        close_position: bool = False,
    ) -> Order:
        try:
            request = OrderRequest(
                client_id=cid,
                symbol=symbol,
                side=side,
                type=order_type,
                purpose=_purpose(order_type, reduce_only, close_position),
                amount=qty,
                reduce_only=reduce_only,
                trigger_price=trigger,
                price=price,
                close_position=close_position,
            )
        except ValueError as exc:
            raise BinanceError(-1102, str(exc)) from exc
        return self.backend.place_order(request)

    def _query_order(self, req: _Req) -> Json:
        found = self._find(req, algo=False)
        if found is None:
            raise BinanceError(-2013)
        order, kind = found
        return self._regular_json(order, with_time=True, actual=kind == "actual")

    def _query_algo_order(self, req: _Req) -> Json:
        found = self._find(req, algo=True)
        if found is None:
            raise BinanceError(-2013)
        return self._algo_json(found[0])

    def _cancel_order(self, req: _Req) -> Json:
        found = self._find(req, algo=False)
        if found is None or found[1] == "actual" or not found[0].is_open:
            raise BinanceError(-2011)
        return self._regular_json(self._cancel(found[0]), with_time=False)

    def _cancel_algo_order(self, req: _Req) -> Json:
        found = self._find(req, algo=True)
        if found is None or not found[0].is_open:
            raise BinanceError(-2011)
        order = self._cancel(found[0])
        aid = self._order_id(order, "algo")
        return {"algoId": aid, "clientAlgoId": order.client_id, "code": "200", "msg": "success"}

    def _cancel(self, order: Order) -> Order:
        self.backend.cancel_order(order.symbol, order.client_id)
        after = self.backend.fetch_order(order.symbol, order.client_id)
        return after if after is not None else order.with_status(OrderStatus.CANCELED)

    def _open(self, symbol: str, *, algo: bool) -> list[Order]:
        orders = self.backend.fetch_open_orders(symbol)
        return [o for o in orders if o.is_open and o.type.is_conditional == algo]

    def _open_orders(self, req: _Req, *, algo: bool) -> Json:
        rows = []
        for sym in self._symbols_of(req):
            for order in self._open(sym, algo=algo):
                rows.append(self._algo_json(order) if algo else self._regular_json(order))
        return rows

    def _cancel_all(self, req: _Req, *, algo: bool) -> Json:
        sym = self._symbol(req)
        for order in self._open(sym, algo=algo):
            self.backend.cancel_order(sym, order.client_id)
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    def _find(self, req: _Req, *, algo: bool) -> tuple[Order, str] | None:
        """Resolve ``orderId``/``origClientOrderId`` (or ``algoId``/``clientAlgoId``)."""
        sym = self._symbol(req)
        id_name, cid_name = ("algoId", "clientAlgoId") if algo else ("orderId", "origClientOrderId")
        oid, cid = req.int_(id_name), req.get(cid_name)
        if oid is None and cid is None:
            raise BinanceError(-1102, f"Either {id_name} or {cid_name} must be sent.")
        if oid is None:
            assert cid is not None
            order = self.backend.fetch_order(sym, cid)
            if order is None or order.type.is_conditional != algo:
                return None  # the other book (regular vs algo) does not see it
            return order, "algo" if algo else "regular"
        for known in self.backend.fetch_open_orders(sym):  # orders placed behind our back
            self._order_id(known, "algo" if known.type.is_conditional else "regular")
        entry = self._ids.get(oid)
        kinds = ("algo",) if algo else ("regular", "actual")
        if entry is None or entry.symbol != sym or entry.kind not in kinds:
            return None
        order = self.backend.fetch_order(sym, entry.client_id)
        if order is None or order.exchange_id != entry.exchange_id:
            return None
        if cid is not None and cid != order.client_id:
            return None
        return order, entry.kind

    def _check_position_side(self, req: _Req) -> None:
        side = (req.get("positionSide") or "BOTH").upper()
        if self.dual_side_position or side != "BOTH":
            # The backend is one-way only; in hedge mode no order can match the setting.
            raise BinanceError(-4061)

    def _client_id(self, req: _Req, name: str) -> str:
        cid = req.get(name)
        if cid is None:  # Binance mints one when none is sent
            self._next_id += 1
            return f"loopback-{self._next_id}"
        if not _CLIENT_ID.match(cid):
            raise BinanceError(-4015)
        return cid

    # -- order JSON ------------------------------------------------------------------------

    def _order_id(self, order: Order, kind: str) -> int:
        """Binance's integer id for ``order``: the backend's id when it is numeric and free."""
        entry = _IdEntry(order.symbol, order.client_id, order.exchange_id, kind)
        known = self._id_of.get(entry)
        if known is not None:
            return known
        raw = order.exchange_id
        if (
            kind != "actual"
            and raw.isdigit()
            and int(raw) < _ACTUAL_ID_BASE
            and int(raw) not in self._ids
        ):
            oid = int(raw)
        else:
            self._next_id += 1
            oid = self._next_id
        self._ids[oid] = entry
        self._id_of[entry] = oid
        return oid

    def _regular_json(
        self, order: Order, *, with_time: bool = True, actual: bool = False, average: bool = True
    ) -> Json:
        extras = self._extras.get((order.symbol, order.client_id, order.exchange_id), {})
        avg = (order.average_price or ZERO) if average else ZERO
        if order.status in _REGULAR_STATUS:
            status = _REGULAR_STATUS[order.status]
        else:
            status = "PARTIALLY_FILLED" if order.filled > 0 else "NEW"
        wire = _WIRE_TYPE[order.type]
        row: dict[str, Json] = {
            "orderId": self._order_id(order, "actual" if actual else "regular"),
            "symbol": self._sid(order.symbol),
            "status": status,
            "clientOrderId": order.client_id,
            "price": _s(order.price or ZERO),
            "avgPrice": _s(avg),
            "origQty": _s(order.amount if order.amount is not None else order.filled),
            "executedQty": _s(order.filled),
            "cumQty": _s(order.filled),
            "cumQuote": _money(order.filled * avg),
            "timeInForce": extras.get("timeInForce", "GTC"),
            "type": "MARKET" if actual else wire,
            "origType": wire,
            "reduceOnly": order.reduce_only,
            "closePosition": order.close_position,
            "side": order.side.name,
            "positionSide": "BOTH",
            "stopPrice": _s(order.trigger_price or ZERO),
            "workingType": extras.get("workingType", "CONTRACT_PRICE"),
            "priceProtect": bool(extras.get("priceProtect", False)),
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "updateTime": order.timestamp_ms,
        }
        if with_time:
            row["time"] = order.timestamp_ms
        return row

    def _algo_json(self, order: Order) -> Json:
        extras = self._extras.get((order.symbol, order.client_id, order.exchange_id), {})
        row: dict[str, Json] = {
            "algoId": self._order_id(order, "algo"),
            "clientAlgoId": order.client_id,
            "algoType": "CONDITIONAL",
            "orderType": _WIRE_TYPE[order.type],
            "symbol": self._sid(order.symbol),
            "side": order.side.name,
            "positionSide": "BOTH",
            "timeInForce": extras.get("timeInForce", "GTC"),
            "quantity": _s(order.amount or ZERO),
            "algoStatus": _ALGO_STATUS.get(order.status, "NEW"),
            "triggerPrice": _s(order.trigger_price or ZERO),
            "price": _s(order.price or ZERO),
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": extras.get("workingType", "CONTRACT_PRICE"),
            "priceMatch": "NONE",
            "closePosition": order.close_position,
            "priceProtect": bool(extras.get("priceProtect", False)),
            "reduceOnly": order.reduce_only,
            "createTime": order.timestamp_ms,
            "updateTime": order.timestamp_ms,
            "triggerTime": 0,
            "goodTillDate": 0,
        }
        if order.status is OrderStatus.FILLED:
            # A triggered algo order becomes a MARKET order, looked up by ``actualOrderId``.
            row["actualOrderId"] = str(self._order_id(order, "actual"))
            row["actualPrice"] = _s(order.average_price or ZERO)
            row["actualQty"] = _s(order.filled)
            row["triggerTime"] = order.timestamp_ms
        return row


def _side(req: _Req) -> OrderSide:
    raw = req.need("side").upper()
    if raw not in ("BUY", "SELL"):
        raise BinanceError(-1117, "Invalid side.")
    return OrderSide.BUY if raw == "BUY" else OrderSide.SELL


def _fields(order: Order) -> dict[str, Any]:
    return {name: getattr(order, name) for name in Order.__slots__}


def _fires_at(order_type: OrderType, side: OrderSide, trigger: Decimal, mark: Decimal) -> bool:
    """Would a conditional order trigger at ``mark`` right away? (Binance rejects it: -2021.)"""
    falls = (order_type is OrderType.STOP_MARKET) == (side is OrderSide.SELL)
    return mark <= trigger if falls else mark >= trigger


def _check_filters(
    inst: Instrument,
    qty: Decimal | None,
    price: Decimal | None,
    trigger: Decimal | None,
    notional_price: Decimal | None,
    *,
    exempt: bool,
) -> None:
    """Binance's symbol filters, checked before the order reaches the backend.

    Too many decimals: -1111; off the tick: -4014; off the step: -4023; zero quantity: -4003;
    below ``minQty``: -4004; below ``MIN_NOTIONAL`` (reduce-only and closePosition exempt): -4164.
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
    if not exempt and notional_price is not None and qty * notional_price < inst.min_notional:
        raise BinanceError(-4164, _min_notional_msg(inst))


def _money(x: Decimal) -> str:
    return _s(x.quantize(Decimal("0.00000001")))


def _max_notional(inst: Instrument, leverage: Decimal) -> Decimal:
    """Largest notional Binance allows at ``leverage`` (``maxNotionalValue``)."""
    caps = [b.notional_cap for b in inst.brackets if b.max_leverage >= leverage]
    return max(caps) if caps else inst.brackets[0].notional_cap


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
