"""Binance USD-M order routes: regular orders (``/fapi/v1/order``, MARKET and LIMIT) and
conditional orders in their own book (``/fapi/v1/algoOrder``, since 2025-12-09), open-order
lists, cancel-all, and the order JSON shapes (all signed)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from bot.domain.enums import OrderSide, OrderStatus, OrderType
from bot.domain.orders import Order, OrderRequest

from .binance_wire import (
    _ACTUAL_ID_BASE,
    _ALGO_STATUS,
    _ALGO_TYPES,
    _CLIENT_ID,
    _CONDITIONAL_TYPES,
    _REGULAR_STATUS,
    _REGULAR_TYPES,
    _WIRE_TYPE,
    BinanceBase,
    BinanceError,
    _check_filters,
    _IdEntry,
    _money,
    _Req,
    _s,
    _side,
)
from .loopback_core import ZERO, Json, fires_at, infer_purpose, order_fields

RouteMap = dict[tuple[str, str], tuple[Callable[[_Req], Json], bool]]


class BinanceOrderRoutes(BinanceBase):
    """Orders go to the backend; the server adds Binance's pre-trade checks and integer ids."""

    def _order_routes(self) -> RouteMap:
        signed: dict[tuple[str, str], Callable[[_Req], Json]] = {
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
        return {key: (fn, True) for key, fn in signed.items()}

    def _new_order(self, req: _Req) -> Json:
        """``POST /fapi/v1/order``: MARKET and LIMIT only since Binance's 2025-12 change."""
        sym = self._trading(self._symbol(req))
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
        _check_filters(
            inst,
            qty,
            price,
            None,
            reference,
            exempt=reduce_only,
            market=order_type is OrderType.MARKET,
        )
        cid = self._client_id(req, "newClientOrderId")
        order = self._place(cid, sym, side, order_type, qty, reduce_only=reduce_only, price=price)
        self._extras[(sym, cid, order.exchange_id)] = {
            "timeInForce": req.get("timeInForce") or "GTC"
        }
        if (req.get("newOrderRespType") or "ACK").upper() == "ACK":
            # ACK (Binance's default) answers before matching: the fill is not in the reply.
            ack = Order(**{**order_fields(order), "status": OrderStatus.OPEN, "filled": ZERO})
            return self._regular_json(ack, with_time=False, average=False)
        return self._regular_json(order, with_time=False)

    def _new_algo_order(self, req: _Req) -> Json:
        """``POST /fapi/v1/algoOrder`` with ``algoType=CONDITIONAL`` (stop/take-profit market)."""
        sym = self._trading(self._symbol(req))
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
        _check_filters(
            inst, qty, None, trigger, trigger, exempt=reduce_only or close_position, market=True
        )
        mark = self._mark(sym)
        assert trigger is not None
        if mark is not None and fires_at(order_type, side, trigger, mark):
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
                purpose=infer_purpose(order_type, reduce_only, close_position),
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
            # Query Algo Order's documented reply: "" and zeros until the order fires; no
            # executed quantity at all (what the order traded is on the order it placed)
            # https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Query-Algo-Order
            "actualOrderId": "",
            "actualPrice": "0",
            "triggerTime": 0,
            "goodTillDate": 0,
        }
        if order.status is OrderStatus.FILLED:
            # A triggered algo order becomes a MARKET order, looked up by ``actualOrderId``.
            row["actualOrderId"] = str(self._order_id(order, "actual"))
            row["actualPrice"] = _s(order.average_price or ZERO)
            row["triggerTime"] = order.timestamp_ms
        return row
