"""What every loopback exchange server shares, whatever the venue's wire protocol.

A loopback server is a wire-contract double: the **real** ccxt class of a venue (request building,
signing, HTTP, parsing, error classes) talks to a ``ThreadingHTTPServer`` on ``127.0.0.1``. The
venue modules (``binance_*``, ``bybit_*``) add routes, signing and JSON shapes; this module holds
the rest, written once:

* the HTTP plumbing (threaded server, handler, start/stop, context manager);
* the request pipeline (fault injection, route lookup, authentication hook, one lock around the
  backend, the request log, internal errors made loud rather than retriable);
* the test controls (:meth:`LoopbackServer.inject`, :meth:`~LoopbackServer.calls`,
  :meth:`~LoopbackServer.set_candles`, ``server_time_offset_ms``, ``timeout_hold_s``);
* small wire helpers (plain decimal text, candle selection, order-purpose inference,
  "would this trigger now").

The trading core (orders, positions, balance, triggers, liquidation) is not here either: it is the
backend, any :class:`bot.ports.exchange.ExchangePort` (normally the project's
:class:`bot.sim.exchange.SimulatedExchange`), so both venues trade the same simulated account.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit

from bot.clock import Clock
from bot.domain.enums import OrderPurpose, OrderSide, OrderType
from bot.domain.orders import Order
from bot.domain.position import Position
from bot.errors import ExchangeError
from bot.ports.exchange import ExchangePort

FaultKind = Literal[
    "timeout",
    "http_500",
    "http_503",
    "rate_limit",
    "ip_ban",
    "timestamp",
    "accept_then_drop",
    # garbled replies: the request IS processed, the answer is damaged on the way back
    "garbled_json",
    "html_200",
    "empty_list",
    "null_fields",
    "json_string",
    "missing_fields",
    # the real JSON reply passed through ``Fault.edit`` (a test's mutator), status 200
    "edit",
]
# Fields a ``null_fields`` fault sets to null in every object of a JSON reply (Binance and
# Bybit names).
NULLED_FIELDS = frozenset(
    {
        # Binance USD-M
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
        # Bybit v5
        "size",
        "avgPrice",
        "liqPrice",
        "positionBalance",
        "unrealisedPnl",
        "qty",
        "orderStatus",
        "cumExecQty",
        "totalPositionIM",
    }
)
CandleKind = Literal["trade", "mark"]
CandleRow = tuple[int, Decimal, Decimal, Decimal, Decimal, Decimal]
Json = Any
ZERO = Decimal(0)


class WireError(Exception):
    """A venue's JSON error reply: ``code`` and ``msg`` (and the HTTP status it travels with)."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure served instead of (or after) the next ``times`` requests to ``method path``.

    ``timeout``: the request is never processed; the connection is held ``timeout_hold_s``
    seconds (longer than the client's timeout) and closed. ``http_500``/``http_503``: an HTML
    error page, not processed. ``rate_limit``: the venue's rate-limit answer (Binance HTTP 429
    ``-1003``, Bybit HTTP 200 ``10006``), a ``Retry-After`` header when ``retry_after`` (seconds)
    is set, not processed. ``ip_ban``: the venue's answer to a banned IP address (Binance HTTP
    418 ``-1003``, ``Retry-After`` when set; Bybit HTTP 403 "access too frequent", no
    ``X-Bapi-*`` header), not processed. ``timestamp``: the venue's timestamp/recvWindow
    rejection (Binance ``-1021``, Bybit ``10002``), not processed. ``accept_then_drop``:
    processed by the backend, then the connection is closed unanswered.
    Garbled replies (processed by the backend, then damaged, status 200): ``garbled_json`` a
    truncated JSON body, ``html_200`` an HTML page, ``empty_list`` ``[]``, ``null_fields`` the
    real JSON with the fields of :data:`NULLED_FIELDS` set to null, ``json_string`` a bare JSON
    string (``"OK"``), ``missing_fields`` every object of the real JSON cut to its ``symbol``,
    ``edit`` the real JSON passed through ``edit`` (a function returning the JSON to send, or
    ``bytes`` to send as they are: a mutator of real replies).
    """

    path: str
    method: str = "POST"
    _: KW_ONLY
    kind: FaultKind
    retry_after: int | None = None
    times: int = 1
    edit: Callable[[Json], Json] | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"Fault.kind {self.kind!r} is not one of {get_args(FaultKind)}")
        if (self.kind == "edit") != (self.edit is not None):
            raise ValueError("Fault.edit is required by kind 'edit' and only allowed with it")
        if self.times < 1:
            raise ValueError(f"Fault.times must be >= 1, got {self.times}")
        if not self.path.startswith("/"):
            raise ValueError(f"Fault.path must start with '/', got {self.path!r}")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server saw it. ``params`` merges query and body (JSON values that are
    not strings are kept as their JSON text: ``true``, ``2``); signatures are redacted.
    ``status`` is the HTTP status sent, ``None`` when the connection was dropped; ``code`` the
    venue's error code when the answer was an error (Bybit answers errors with HTTP 200)."""

    method: str
    path: str
    params: dict[str, str]
    status: int | None = None
    fault: str | None = None
    code: int | None = None


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    code: int | None = None  # the venue's error code, for the request log


@dataclass(slots=True)
class _Pending:
    fault: Fault
    remaining: int


Route = tuple[Callable[[Any], Json], bool]  # (handler taking the venue's request, signed?)


def json_reply(
    status: int,
    payload: Json,
    headers: tuple[tuple[str, str], ...] = (),
    code: int | None = None,
) -> Reply:
    return Reply(status, json.dumps(payload).encode(), headers=headers, code=code)


def html_reply(status: int, title: str) -> Reply:
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
    return Reply(status, page.encode(), "text/html")


def _garbled_json(reply: Reply) -> Reply:
    return Reply(200, reply.body[: max(1, len(reply.body) // 2)])


def _html_200(reply: Reply) -> Reply:
    return html_reply(200, "Service notice")


def _empty_list(reply: Reply) -> Reply:
    return Reply(200, b"[]")


def _null_fields(reply: Reply) -> Reply:
    def scrub(value: Json) -> Json:
        if isinstance(value, dict):
            return {k: None if k in NULLED_FIELDS else scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v) for v in value]
        return value

    return Reply(200, json.dumps(scrub(json.loads(reply.body))).encode())


def _json_string(reply: Reply) -> Reply:
    return Reply(200, b'"OK"')


def _missing_fields(reply: Reply) -> Reply:
    def cut(value: Json) -> Json:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k == "symbol"}
        if isinstance(value, list):
            return [cut(v) for v in value]
        return value

    return Reply(200, json.dumps(cut(json.loads(reply.body))).encode())


GARBLERS: dict[str, Callable[[Reply], Reply]] = {
    "garbled_json": _garbled_json,
    "html_200": _html_200,
    "empty_list": _empty_list,
    "null_fields": _null_fields,
    "json_string": _json_string,
    "missing_fields": _missing_fields,
}


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, lets the :class:`LoopbackServer` answer it, writes (or drops) it."""

    server_version = "loopback-exchange"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr line; :attr:`LoopbackServer.requests` records them."""

    def _serve(self, method: str) -> None:
        app = cast(_Server, self.server).app
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            url = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = app.handle(method, url.path, url.query, body, headers)
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
    app: LoopbackServer


class LoopbackServer:
    """A venue's REST API on ``127.0.0.1``, backed by an :class:`ExchangePort`.

    Subclasses (one per venue) provide :meth:`_route_table`, :meth:`_parse_params`,
    :meth:`_authenticate`, :meth:`_success`, :meth:`_error`, :meth:`_from_backend` and
    :meth:`_fault_reply`. ``start()`` binds a free port (``base_url`` then is
    ``http://127.0.0.1:<port>``). Requests are served on threads; every request that touches the
    backend holds :attr:`lock`, so hold it too when driving the backend from another thread
    while requests are in flight. Usable as a context manager.
    """

    venue = "exchange"
    redacted_params: frozenset[str] = frozenset({"signature", "sign"})

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
            raise ValueError(f"{type(self).__name__} needs at least one symbol")
        self.backend = backend
        self.clock = clock
        self.server_time_offset_ms = server_time_offset_ms
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []  # unexpected exceptions inside the server (should stay empty)
        self.lock = threading.RLock()
        self.timeout_hold_s = 2.5  # how long a "timeout" fault holds the connection
        self._key = api_key
        self._secret = api_secret.encode()
        self._symbols = list(symbols)
        self._by_id: dict[str, str] = {}  # venue symbol id -> unified symbol
        for sym in self._symbols:
            inst = backend.instrument(sym)
            self._by_id[inst.base + inst.quote] = sym
        self._faults: list[_Pending] = []
        self._meta_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._candles: dict[tuple[str, CandleKind], list[CandleRow]] = {}
        self._funding_history: dict[str, list[tuple[int, Decimal]]] = {}
        self._routes: dict[tuple[str, str], Route] = self._route_table()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__}.base_url: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Bind ``127.0.0.1`` on a free port and serve on a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.app = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=f"loopback-{self.venue}",
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

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls ---------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        """Queue ``fault`` for the next ``fault.times`` requests matching its method and path."""
        with self._meta_lock:
            self._faults.append(_Pending(fault, fault.times))

    def ban_ip(self, *, retry_after: int | None = None, times: int = 10_000) -> None:
        """Answer the next ``times`` requests of every route as the venue answers an IP address
        it banned (an ``ip_ban`` fault on each): a ban is the address's, not one endpoint's."""
        for method, path in self._routes:
            self.inject(Fault(path, method, kind="ip_ban", retry_after=retry_after, times=times))

    def clear_faults(self) -> None:
        """Drop every fault still queued."""
        with self._meta_lock:
            self._faults.clear()

    def set_candles(self, symbol: str, kind: CandleKind, rows: Sequence[CandleRow]) -> None:
        """Serve ``rows`` (open ms, open, high, low, close, volume) as trade (``kind="trade"``)
        or mark-price (``kind="mark"``) candles."""
        if symbol not in self._symbols:
            raise ValueError(f"set_candles: unknown symbol {symbol!r}; known: {self._symbols}")
        if kind not in get_args(CandleKind):
            raise ValueError(f"set_candles: kind {kind!r} is not 'trade' or 'mark'")
        for i in range(1, len(rows)):
            if rows[i][0] <= rows[i - 1][0]:
                raise ValueError(f"set_candles {symbol} {kind}: row {i} open time not increasing")
        self._candles[(symbol, kind)] = list(rows)

    def set_funding_history(self, symbol: str, rows: Sequence[tuple[int, Decimal]]) -> None:
        """Serve ``rows`` (settlement time ms, rate as a fraction) as funding-rate history."""
        if symbol not in self._symbols:
            raise ValueError(
                f"set_funding_history: unknown symbol {symbol!r}; known: {self._symbols}"
            )
        for i in range(1, len(rows)):
            if rows[i][0] <= rows[i - 1][0]:
                raise ValueError(f"set_funding_history {symbol}: row {i} time not increasing")
        self._funding_history[symbol] = list(rows)

    def calls(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests to ``path`` (and ``method``, when given), oldest first."""
        with self._meta_lock:
            return [r for r in self.requests if r.path == path and method in (None, r.method)]

    def server_time_ms(self) -> int:
        return self.clock.now_ms() + self.server_time_offset_ms

    # -- request pipeline ------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: str, body: str, headers: Mapping[str, str]
    ) -> Reply | None:
        """Answer one HTTP request; ``None`` means close the connection without a reply.

        ``headers`` have lower-case names.
        """
        try:
            params = self._parse_params(method, query, body)
        except WireError as err:
            self._record(method, path, {}, err.status, None, err.code)
            return self._error(err)
        fault = self._take_fault(method, path)
        kind = fault.kind if fault is not None else None
        reply: Reply
        if kind == "timeout":
            self._record(method, path, params, None, kind)
            self._stopping.wait(self.timeout_hold_s)
            return None
        if kind == "http_500":
            reply = html_reply(500, "500 Internal Server Error")
        elif kind == "http_503":
            reply = html_reply(503, "503 Service Temporarily Unavailable")
        elif fault is not None and kind in ("rate_limit", "ip_ban", "timestamp"):
            reply = self._fault_reply(fault)
        else:
            reply = self._process(method, path, params, query, body, headers)
        if kind == "accept_then_drop":
            self._record(method, path, params, None, kind)
            return None
        if kind in GARBLERS and reply.status == 200:
            reply = GARBLERS[kind](reply)
        elif fault is not None and fault.edit is not None and reply.status == 200:
            edited = fault.edit(json.loads(reply.body))
            sent = edited if isinstance(edited, bytes) else json.dumps(edited).encode()
            reply = Reply(200, sent, headers=reply.headers)
        self._record(method, path, params, reply.status, kind, reply.code)
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
        self,
        method: str,
        path: str,
        params: Mapping[str, Any],
        status: int | None,
        fault: str | None,
        code: int | None = None,
    ) -> None:
        shown = {
            k: ("<redacted>" if k in self.redacted_params else _text(v)) for k, v in params.items()
        }
        with self._meta_lock:
            self.requests.append(RecordedRequest(method, path, shown, status, fault, code))

    def _process(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        query: str,
        body: str,
        headers: Mapping[str, str],
    ) -> Reply:
        route = self._routes.get((method, path))
        if route is None:
            return self._not_found(method, path)
        fn, signed = route
        try:
            now = self.server_time_ms()
            if signed:
                self._authenticate(params, query, body, headers, now)
            with self.lock:
                return self._success(fn(self._request(params, now)), now)
        except WireError as err:
            return self._error(err)
        except ExchangeError as exc:
            return self._error(self._from_backend(exc, params))
        except Exception as exc:  # a bug here or in the backend: make it visible, not retriable
            self.errors.append(f"{method} {path}: {exc!r}")
            return self._internal_error(exc)

    # -- venue hooks -----------------------------------------------------------------------

    def _route_table(self) -> dict[tuple[str, str], Route]:
        raise NotImplementedError

    def _parse_params(self, method: str, query: str, body: str) -> dict[str, Any]:
        raise NotImplementedError

    def _request(self, params: dict[str, Any], now_ms: int) -> Any:
        raise NotImplementedError

    def _authenticate(
        self,
        params: dict[str, Any],
        query: str,
        body: str,
        headers: Mapping[str, str],
        now: int,
    ) -> None:
        raise NotImplementedError

    def _success(self, payload: Json, now: int) -> Reply:
        raise NotImplementedError

    def _error(self, err: WireError) -> Reply:
        raise NotImplementedError

    def _from_backend(self, exc: ExchangeError, params: Mapping[str, Any]) -> WireError:
        raise NotImplementedError

    def _fault_reply(self, fault: Fault) -> Reply:
        raise NotImplementedError

    def _not_found(self, method: str, path: str) -> Reply:
        raise NotImplementedError

    def _internal_error(self, exc: Exception) -> Reply:
        raise NotImplementedError

    # -- backend helpers -------------------------------------------------------------------

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

    def _pick_candles(
        self,
        symbol: str,
        kind: CandleKind,
        now_ms: int,
        start: int | None,
        end: int | None,
        limit: int,
    ) -> list[CandleRow]:
        """Rows opened by ``now_ms`` within [start, end]; the first ``limit`` from ``start``
        when it is given, else the last ``limit`` (both venues page that way)."""
        rows = self._candles.get((symbol, kind), [])
        picked = [
            r
            for r in rows
            if r[0] <= now_ms and (start is None or r[0] >= start) and (end is None or r[0] <= end)
        ]
        return picked[:limit] if start is not None else picked[-limit:]

    def _candle_spacing(self, symbol: str, kind: CandleKind, default: int) -> int:
        rows = self._candles.get((symbol, kind), [])
        return min((b[0] - a[0] for a, b in itertools.pairwise(rows)), default=default)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def plain(x: Decimal) -> str:
    """Plain decimal text (no exponent), as both venues send numbers in strings."""
    return "0" if x == 0 else format(x.normalize(), "f")


def money(x: Decimal) -> str:
    return plain(x.quantize(Decimal("0.00000001")))


def decimals(x: Decimal) -> int:
    exponent = x.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def infer_purpose(order_type: OrderType, reduce_only: bool, close_position: bool) -> OrderPurpose:
    """The wire carries no purpose; infer the one :class:`OrderRequest` requires."""
    protective = reduce_only or close_position
    if protective and order_type is OrderType.STOP_MARKET:
        return OrderPurpose.STOP_LOSS
    if protective and order_type is OrderType.TAKE_PROFIT_MARKET:
        return OrderPurpose.TAKE_PROFIT
    return OrderPurpose.REDUCE if protective else OrderPurpose.ENTRY


def fires_at(order_type: OrderType, side: OrderSide, trigger: Decimal, mark: Decimal) -> bool:
    """Would a conditional order trigger at ``mark`` right away? (Both venues reject it.)"""
    falls = (order_type is OrderType.STOP_MARKET) == (side is OrderSide.SELL)
    return mark <= trigger if falls else mark >= trigger


def order_fields(order: Order) -> dict[str, Any]:
    return {name: getattr(order, name) for name in Order.__slots__}
