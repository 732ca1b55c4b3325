"""Bybit v5 order routes (private): create, amend, cancel, cancel-all, realtime (open and recent
orders, by ``orderId``/``orderLinkId``), history, and position trading-stop (TP/SL attached to
the position).

A conditional order on Bybit is a Market/Limit order with ``triggerPrice`` and
``triggerDirection`` (1 rises to, 2 falls to); ``triggerBy`` picks the price (``LastPrice`` by
default, ``MarkPrice``, ``IndexPrice``). The backend knows stop-market and take-profit-market
orders; the server derives which from side and direction (:func:`conditional_type`).

https://bybit-exchange.github.io/docs/v5/order/create-order, .../order/amend-order,
.../order/cancel-order, .../order/open-order, .../order/order-list, .../position/trading-stop
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Literal

from bot.domain.enums import OrderSide, OrderStatus, OrderType
from bot.domain.orders import Order, OrderRequest
from bot.sim.exchange import SimulatedExchange

from .bybit_wire import (
    _LINK_ID,
    MSG,
    BybitBase,
    BybitError,
    BybitReq,
    _Link,
    check_order_numbers,
    conditional_type,
    direction_of,
    params_error,
    parse_side,
    wire_side,
)
from .loopback_core import ZERO, Json, fires_at, infer_purpose, money, plain

RouteMap = dict[tuple[str, str], tuple[Callable[[BybitReq], Json], bool]]
_TRIGGER_BY = ("LastPrice", "MarkPrice", "IndexPrice")
_FINAL = (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)
# "a single account can hold at most 10 conditional orders per symbol" (create-order docs)
MAX_CONDITIONAL_PER_SYMBOL = 10
# GET /v5/order/realtime and /v5/order/history: `limit` rows per page, [1, 50], default 20
# (out of range: clamped here, *unverified* on the venue); `nextPageCursor` to send back as
# `cursor`, "" on the last page. https://bybit-exchange.github.io/docs/v5/order/open-order
PAGE_DEFAULT, PAGE_MAX = 20, 50
CursorFault = Literal["repeat", "endless"]


class BybitOrderRoutes(BybitBase):
    """Orders go to the backend; the server adds Bybit's pre-trade checks, UUID order ids and
    the ``orderLinkId`` rules (36 characters, unique per account whatever the order's status).

    ``cursor_fault`` makes the order lists misbehave: ``"repeat"`` answers every page with the
    same cursor (a loop), ``"endless"`` answers the first page again and again with a new
    cursor each time (a list that never ends)."""

    cursor_fault: CursorFault | None = None
    _cursor_faults = 0

    def _order_routes(self) -> RouteMap:
        signed: dict[tuple[str, str], Callable[[BybitReq], Json]] = {
            ("POST", "/v5/order/create"): self._create,
            ("POST", "/v5/order/amend"): self._amend,
            ("POST", "/v5/order/cancel"): self._cancel,
            ("POST", "/v5/order/cancel-all"): self._cancel_all,
            ("GET", "/v5/order/realtime"): self._realtime,
            ("GET", "/v5/order/history"): self._history,
            ("POST", "/v5/position/trading-stop"): self._trading_stop,
        }
        return {key: (fn, True) for key, fn in signed.items()}

    # -- create ------------------------------------------------------------------------------

    def _create(self, req: BybitReq) -> Json:
        if not self._linear(req):
            raise params_error("category: the loopback server trades linear contracts only")
        sym = self._symbol(req)
        side = parse_side(req)
        kind = req.need("orderType")
        if kind not in ("Market", "Limit"):
            raise params_error(f"orderType invalid: {kind}")
        self._check_position_idx(req)
        for attached in ("stopLoss", "takeProfit"):
            if req.get(attached) is not None:
                raise params_error(f"{attached}: attached TP/SL is not supported by the loopback")
        req.need("qty")
        qty = req.dec("qty")
        price = req.dec("price") if kind == "Limit" else None
        if kind == "Limit" and price is None:
            req.need("price")
        reduce_only = req.flag("reduceOnly")
        close_on_trigger = req.flag("closeOnTrigger")
        link = self._new_link(req)
        trigger = req.dec("triggerPrice")
        inst = self.backend.instrument(sym)
        # qty "0" + reduceOnly + closeOnTrigger closes the whole position (create-order docs).
        close_all = qty == 0 and reduce_only and close_on_trigger
        if trigger is None:
            order_type = OrderType.LIMIT if kind == "Limit" else OrderType.MARKET
            if close_all:
                pos = self._positions().get(sym)
                if pos is None:
                    raise BybitError(110017)
                qty = abs(pos.qty)
            check_order_numbers(
                inst,
                qty,
                price,
                None,
                price or self._mark(sym),
                exempt=reduce_only,
                market=order_type is OrderType.MARKET,
            )
            extras: dict[str, Json] = {"triggerBy": "", "triggerDirection": 0}
            link = self._place(link, sym, side, order_type, qty, reduce_only, price=price)
        else:
            if kind == "Limit":
                raise params_error("conditional Limit orders are not supported by the loopback")
            direction = req.int_("triggerDirection")
            if direction not in (1, 2):
                raise params_error("TriggerDirection invalid: must be 1 (rise) or 2 (fall)")
            trigger_by = req.get("triggerBy") or "LastPrice"
            if trigger_by not in _TRIGGER_BY:
                raise params_error(f"triggerBy invalid: {trigger_by}")
            self._check_direction(sym, direction, trigger)
            self._check_conditional_room(sym)
            order_type = conditional_type(side, direction)
            check_order_numbers(
                inst,
                None if close_all else qty,
                None,
                trigger,
                trigger,
                exempt=reduce_only,
                market=True,
            )
            extras = {"triggerBy": trigger_by, "triggerDirection": direction}
            link = self._place(
                link,
                sym,
                side,
                order_type,
                None if close_all else qty,
                reduce_only and not close_all,
                trigger=trigger,
                close_position=close_all,
            )
        extras["closeOnTrigger"] = close_on_trigger
        extras["timeInForce"] = req.get("timeInForce") or ("GTC" if kind == "Limit" else "IOC")
        extras["stopOrderType"] = "Stop" if trigger is not None else ""
        self._extras[(sym, link.link)] = extras
        return {"orderId": link.order_id, "orderLinkId": "" if link.minted else link.link}

    def _new_link(self, req: BybitReq) -> _Link:
        raw = req.get("orderLinkId")
        if raw is None:
            return _Link("", self._mint_link(), "", True)
        if not _LINK_ID.match(raw):
            raise params_error(f"orderLinkId invalid: {raw!r}")
        if any(link == raw for _, link in self._links):
            raise BybitError(110072)
        return _Link("", raw, raw, False)

    def _check_position_idx(self, req: BybitReq) -> None:
        idx = req.int_("positionIdx", 0)
        if self.hedged(self._symbol(req)) or idx != 0:
            # The backend is one-way only; in hedge mode no order can match the setting.
            raise params_error("position idx not match position mode")

    def _check_conditional_room(self, sym: str) -> None:
        resting = [o for o in self.backend.fetch_open_orders(sym) if o.type.is_conditional]
        if len(resting) >= MAX_CONDITIONAL_PER_SYMBOL:
            raise BybitError(110009)

    def _check_direction(self, sym: str, direction: int, trigger: Decimal | None) -> None:
        current = self._mark(sym)  # the backend has one price: triggerBy is echoed, not used
        if trigger is None or current is None:
            return
        if direction == 1 and trigger <= current:
            raise BybitError(110092, MSG[110092].format(trigger=trigger, current=current))
        if direction == 2 and trigger >= current:
            raise BybitError(110093, MSG[110093].format(trigger=trigger, current=current))

    def _place(
        self,
        link: _Link,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        qty: Decimal | None,
        reduce_only: bool,
        *,
        price: Decimal | None = None,
        trigger: Decimal | None = None,
        close_position: bool = False,
        backend_cid: str | None = None,
    ) -> _Link:
        cid = backend_cid or link.link
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
            raise params_error(str(exc)) from exc
        before = self._positions().get(symbol)
        order = self.backend.place_order(request)
        if link.order_id:  # an amend: same wire order, new backend order
            entry = replace(link, backend_cid=cid)
            self._links[(symbol, link.link)] = entry
            self._link_of[(symbol, cid)] = link.link
        else:
            entry = self._register(symbol, link.link, cid, minted=link.minted)
        if order.status is OrderStatus.FILLED and not order.type.is_conditional:
            self._pnl_seen.add((symbol, cid))
            if before is not None and (before.qty > 0) != (side is OrderSide.BUY):
                closed = min(order.filled, abs(before.qty))
                self._record_close(order, closed, before.entry_price, before.leverage, 0)
        return entry

    # -- amend / cancel ----------------------------------------------------------------------

    def _find(self, req: BybitReq) -> tuple[str, _Link] | None:
        sym = self._symbol(req)
        oid, link = req.get("orderId"), req.get("orderLinkId")
        if oid is None and link is None:
            raise params_error("orderId or orderLinkId is required")
        for known in self.backend.fetch_open_orders(sym):  # orders placed behind our back
            self._link_for(known)
        if oid is not None:
            found = self._by_oid.get(oid)
            if found is None or found[0] != sym or (link is not None and found[1] != link):
                return None
            return sym, self._links[found]
        assert link is not None
        entry = self._links.get((sym, link))
        return (sym, entry) if entry is not None else None

    def _amend(self, req: BybitReq) -> Json:
        self._linear(req)
        found = self._find(req)
        order = self._backend_order(*found) if found is not None else None
        if found is None or order is None or not order.is_open:
            raise BybitError(110001)
        sym, entry = found
        qty = req.dec("qty") or order.amount
        trigger = req.dec("triggerPrice") or order.trigger_price
        extras = self._extras.setdefault((sym, entry.link), {})
        trigger_by = req.get("triggerBy") or extras.get("triggerBy") or "LastPrice"
        if (qty, trigger, trigger_by) == (
            order.amount,
            order.trigger_price,
            extras.get("triggerBy"),
        ):
            raise params_error(
                "The order remains unchanged as the parameters entered match the existing ones."
            )
        if req.get("price") is not None:
            raise params_error("price: amending a limit price is not supported by the loopback")
        if order.type.is_conditional:
            direction = direction_of(order.type, order.side)
            self._check_direction(sym, direction, trigger)
        inst = self.backend.instrument(sym)
        check_order_numbers(
            inst, qty, None, trigger, trigger, exempt=True, market=order.type is not OrderType.LIMIT
        )
        self.backend.cancel_order(sym, order.client_id)
        self._pnl_seen.add((sym, order.client_id))
        amended = f"{entry.link[:30]}~{self._next_link}"
        self._next_link += 1
        self._place(
            entry,
            sym,
            order.side,
            order.type,
            None if order.close_position else qty,
            order.reduce_only,
            trigger=trigger,
            close_position=order.close_position,
            backend_cid=amended,
        )
        extras["triggerBy"] = trigger_by
        return {"orderId": entry.order_id, "orderLinkId": "" if entry.minted else entry.link}

    def _cancel(self, req: BybitReq) -> Json:
        self._linear(req)
        found = self._find(req)
        order = self._backend_order(*found) if found is not None else None
        if found is None or order is None or not order.is_open:
            raise BybitError(110001)
        sym, entry = found
        self.backend.cancel_order(sym, order.client_id)
        return {"orderId": entry.order_id, "orderLinkId": "" if entry.minted else entry.link}

    def _cancel_all(self, req: BybitReq) -> Json:
        self._linear(req)
        wanted = req.get("orderFilter")
        rows = []
        for sym in self._symbols_of(req):
            for order in self.backend.fetch_open_orders(sym):
                if wanted == "StopOrder" and not order.type.is_conditional:
                    continue
                if wanted == "Order" and order.type.is_conditional:
                    continue
                entry = self._link_for(order)
                self.backend.cancel_order(sym, order.client_id)
                link = "" if entry.minted else entry.link
                rows.append({"orderId": entry.order_id, "orderLinkId": link})
        return {"list": rows, "success": "1"}

    # -- queries -----------------------------------------------------------------------------

    def _realtime(self, req: BybitReq) -> Json:
        """Open orders; by ``orderId``/``orderLinkId`` any recent order whatever its status;
        ``openOnly=1`` the recent closed ones."""
        category = req.need("category")
        if not self._linear(req):
            return {"category": category, "list": [], "nextPageCursor": ""}
        if all(req.get(k) is None for k in ("symbol", "settleCoin", "baseCoin")):
            raise params_error("symbol, settleCoin or baseCoin is required")
        by_id = req.get("orderId") is not None or req.get("orderLinkId") is not None
        closed = req.int_("openOnly", 0) == 1
        selected = [
            (order, entry)
            for order, entry in self._orders(req)
            if by_id or (order.status in _FINAL) == closed
        ]
        page, cursor = self._page(req, selected)
        rows = [self._order_json(order, entry) for order, entry in page]
        return {"category": category, "list": rows, "nextPageCursor": cursor}

    def _history(self, req: BybitReq) -> Json:
        category = req.need("category")
        if not self._linear(req):
            return {"category": category, "list": [], "nextPageCursor": ""}
        start, end = req.int_("startTime"), req.int_("endTime")
        selected = [
            (order, entry)
            for order, entry in self._orders(req)
            if order.status in _FINAL
            and (start is None or order.timestamp_ms >= start)
            and (end is None or order.timestamp_ms <= end)
        ]
        page, cursor = self._page(req, selected)
        rows = [self._order_json(order, entry) for order, entry in page]
        return {"category": category, "list": rows, "nextPageCursor": cursor}

    def _page(
        self, req: BybitReq, selected: list[tuple[Order, _Link]]
    ) -> tuple[list[tuple[Order, _Link]], str]:
        """One page of ``selected`` (newest first) and the cursor of the next ("" at the end).

        The cursor names the first and last order of the page (``orderId:createdTime``, joined
        by a comma, as Bybit's look); the next page starts after the last one, so an order
        placed or cancelled between two pages neither repeats nor hides another."""
        limit = min(max(req.int_("limit", PAGE_DEFAULT) or PAGE_DEFAULT, 1), PAGE_MAX)
        cursor = req.get("cursor")
        if cursor is not None and self.cursor_fault is None:
            last = self._cursor_key(cursor)
            selected = [p for p in selected if self._sort_key(p) < last]
        page = selected[:limit]
        if self.cursor_fault == "repeat":
            return page, "loopback-stuck-cursor"
        if self.cursor_fault == "endless":
            self._cursor_faults += 1
            return page, f"loopback-endless-{self._cursor_faults}"
        if len(selected) <= limit:
            return page, ""
        first, last_row = page[0], page[-1]
        return page, ",".join(
            f"{entry.order_id}:{order.timestamp_ms}" for order, entry in (first, last_row)
        )

    def _sort_key(self, pair: tuple[Order, _Link]) -> tuple[int, int]:
        """Newest first: by createdTime, ties by arrival."""
        return (pair[0].timestamp_ms, self._oid_seq[pair[1].order_id])

    def _cursor_key(self, cursor: str) -> tuple[int, int]:
        last = cursor.rsplit(",", 1)[-1]
        oid, _, created = last.partition(":")
        if oid not in self._oid_seq or not created.isdigit():
            raise params_error(f"cursor invalid: {cursor!r}")
        return (int(created), self._oid_seq[oid])

    def _orders(self, req: BybitReq) -> list[tuple[Order, _Link]]:
        """The wire orders the request selects, newest first, with their current backend
        order. ``orderFilter=StopOrder`` selects orders placed as conditional (triggered ones
        too), ``Order`` the others, ``tpslOrder`` the trading-stop ones."""
        symbols = self._symbols_of(req)
        if req.get("settleCoin") is not None:
            symbols = [
                s for s in symbols if self.backend.instrument(s).quote == req.get("settleCoin")
            ]
        if req.get("baseCoin") is not None:
            symbols = [s for s in symbols if self.backend.instrument(s).base == req.get("baseCoin")]
        oid, link = req.get("orderId"), req.get("orderLinkId")
        wanted = req.get("orderFilter")
        out: list[tuple[Order, _Link]] = []
        for sym in symbols:
            for known in self.backend.fetch_open_orders(sym):
                self._link_for(known)
        for (sym, _link), entry in self._links.items():
            if sym not in symbols:
                continue
            if oid is not None and entry.order_id != oid:
                continue
            if link is not None and (entry.minted or entry.link != link):
                continue
            order = self._backend_order(sym, entry)
            if order is None:
                continue
            stop_type = self._extras.get((sym, entry.link), {}).get("stopOrderType")
            if stop_type is None:
                stop_type = "Stop" if order.type.is_conditional else ""
            tpsl = stop_type not in ("", "Stop")
            if wanted == "StopOrder" and stop_type != "Stop":
                continue
            if wanted == "Order" and stop_type:
                continue
            if wanted == "tpslOrder" and not tpsl:
                continue
            out.append((order, entry))
        out.sort(key=self._sort_key, reverse=True)
        return out

    # -- trading-stop ------------------------------------------------------------------------

    def _trading_stop(self, req: BybitReq) -> Json:
        """TP/SL attached to the position: ``Full`` closes the whole position (a close-position
        conditional order, one per kind, replaced on every call; ``"0"`` cancels it),
        ``Partial`` a reduce-only conditional order of ``slSize``/``tpSize``. Market only."""
        self._linear(req)
        sym = self._symbol(req)
        self._check_position_idx(req)
        mode = req.get("tpslMode") or "Full"
        if mode not in ("Full", "Partial"):
            raise params_error(f"tpslMode invalid: {mode}")
        pos = self._positions().get(sym)
        if pos is None:
            raise params_error("can not set tp/sl/ts for zero position")
        side = OrderSide.SELL if pos.qty > 0 else OrderSide.BUY
        inst = self.backend.instrument(sym)
        for kind, price_key, size_key, order_type in (
            ("sl", "stopLoss", "slSize", OrderType.STOP_MARKET),
            ("tp", "takeProfit", "tpSize", OrderType.TAKE_PROFIT_MARKET),
        ):
            price = req.dec(price_key)
            if price is None:
                continue
            if (req.get(f"{kind}OrderType") or "Market") != "Market":
                raise params_error(f"{kind}OrderType: only Market is supported by the loopback")
            if mode == "Full":
                self._drop_full(sym, kind)
                if price == 0:
                    continue
            mark = self._mark(sym)
            if price <= 0 or (mark is not None and fires_at(order_type, side, price, mark)):
                raise params_error(f"{price_key} {plain(price)} would trigger at once")
            size = None if mode == "Full" else req.dec(size_key)
            if mode == "Partial" and size is None:
                raise params_error(f"{size_key} is required with tpslMode=Partial")
            check_order_numbers(inst, size, None, price, price, exempt=True)
            self._check_conditional_room(sym)
            link = _Link("", self._mint_link(), "", True)
            entry = self._place(
                link,
                sym,
                side,
                order_type,
                size,
                mode == "Partial",
                trigger=price,
                close_position=mode == "Full",
            )
            label = "StopLoss" if kind == "sl" else "TakeProfit"
            self._extras[(sym, entry.link)] = {
                "triggerBy": req.get(f"{kind}TriggerBy") or "LastPrice",
                "triggerDirection": direction_of(order_type, side),
                "closeOnTrigger": mode == "Full",
                "timeInForce": "GTC",
                "stopOrderType": label if mode == "Full" else f"Partial{label}",
            }
            if mode == "Full":
                self._tpsl[(sym, kind)] = entry.link
        return {}

    def _drop_full(self, sym: str, kind: str) -> None:
        link = self._tpsl.pop((sym, kind), None)
        entry = self._links.get((sym, link)) if link is not None else None
        order = self._backend_order(sym, entry) if entry is not None else None
        if order is not None and order.is_open:
            self.backend.cancel_order(sym, order.client_id)

    # -- the price moving ----------------------------------------------------------------------

    def move_mark(self, symbol: str, mark: Decimal, *, margin_short: bool = False) -> None:
        """Move the backend's mark to ``mark`` (its triggers run there), as the venue's price.

        ``margin_short``: the account's available margin is short when the orders trigger. A
        conditional order "does not occupy the margin. If the margin is insufficient after the
        conditional order is triggered, the order will be cancelled"; one placed with
        ``closeOnTrigger`` reduces the position "regardless of current available margin"
        (https://bybit-exchange.github.io/docs/v5/order/create-order). So each conditional
        order of ``symbol`` the mark reaches that was placed without the flag is cancelled
        (``Deactivated``) before the triggers run; the flagged ones fire."""
        backend = self.backend
        if not isinstance(backend, SimulatedExchange):
            raise TypeError("move_mark: the backend's triggers are a SimulatedExchange's")
        with self.lock:
            if margin_short:
                for order in self.backend.fetch_open_orders(symbol):
                    if order.trigger_price is None or not fires_at(
                        order.type, order.side, order.trigger_price, mark
                    ):
                        continue
                    entry = self._link_for(order)
                    if not self._extras.get((symbol, entry.link), {}).get("closeOnTrigger"):
                        self.backend.cancel_order(symbol, order.client_id)
            backend.set_mark(symbol, mark)

    # -- order JSON --------------------------------------------------------------------------

    def _order_json(self, order: Order, entry: _Link) -> Json:
        extras = self._extras.get((order.symbol, entry.link), {})
        conditional = order.type.is_conditional
        if order.status is OrderStatus.FILLED:
            status = "Filled"
        elif order.status is OrderStatus.CANCELED:
            status = "Deactivated" if conditional else "Cancelled"
        elif order.status is OrderStatus.REJECTED:
            status = "Rejected"
        elif conditional:
            status = "Untriggered"
        else:
            status = "PartiallyFilled" if order.filled > 0 else "New"
        avg = order.average_price or ZERO
        qty = order.amount if order.amount is not None else order.filled
        value = order.filled * avg
        fee = value * self.backend.instrument(order.symbol).taker_fee
        leaves = (qty - order.filled) if order.is_open and qty is not None else ZERO
        return {
            "orderId": entry.order_id,
            "orderLinkId": "" if entry.minted else entry.link,
            "blockTradeId": "",
            "symbol": self._sid(order.symbol),
            "price": plain(order.price or ZERO),
            "qty": plain(qty or ZERO),
            "side": wire_side(order.side),
            "isLeverage": "",
            "positionIdx": 0,
            "orderStatus": status,
            "cancelType": "CancelByUser" if order.status is OrderStatus.CANCELED else "UNKNOWN",
            "rejectReason": "EC_NoError",
            "avgPrice": plain(avg) if order.filled > 0 else "",
            "leavesQty": plain(leaves),
            "leavesValue": money(leaves * (order.price or order.trigger_price or ZERO)),
            "cumExecQty": plain(order.filled),
            "cumExecValue": money(value),
            "cumExecFee": money(fee),
            "timeInForce": extras.get("timeInForce", "GTC"),
            "orderType": "Limit" if order.type is OrderType.LIMIT else "Market",
            "stopOrderType": extras.get("stopOrderType", "Stop" if conditional else ""),
            "orderIv": "",
            "triggerPrice": plain(order.trigger_price or ZERO),
            "takeProfit": "0",
            "stopLoss": "0",
            "tpTriggerBy": "",
            "slTriggerBy": "",
            "triggerDirection": extras.get(
                "triggerDirection", direction_of(order.type, order.side) if conditional else 0
            ),
            "triggerBy": extras.get("triggerBy", "LastPrice" if conditional else ""),
            "lastPriceOnCreated": "",
            "reduceOnly": order.reduce_only or order.close_position,
            "closeOnTrigger": bool(extras.get("closeOnTrigger", order.close_position)),
            "smpType": "None",
            "smpGroup": 0,
            "smpOrderId": "",
            "tpslMode": "",
            "tpLimitPrice": "",
            "slLimitPrice": "",
            "placeType": "",
            "createdTime": str(order.timestamp_ms),
            "updatedTime": str(order.timestamp_ms),
        }
