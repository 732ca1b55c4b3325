"""ccxt order dicts <-> domain orders, and the arguments of ``create_order``. Pure functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, NamedTuple

from bot.domain.enums import OrderPurpose, OrderSide, OrderStatus, OrderType, TriggerBy
from bot.domain.orders import Order, OrderRequest
from bot.exchange.capabilities import FiredOrders
from bot.exchange.mapping import (
    ZERO,
    UnexpectedResponse,
    opt_decimal,
    parse_purpose,
    positive_or_none,
    to_decimal,
)

_STATUSES = {
    "open": OrderStatus.OPEN,
    # Binance PENDING_CANCEL ("currently unused"): still resting until the venue cancels it;
    # an open-order list must not become unreadable for it (require_resting)
    "canceling": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,  # for a conditional order: triggered
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.CANCELED,
    "rejected": OrderStatus.REJECTED,
}


def order_from_ccxt(
    raw: Mapping[str, Any],
    *,
    fallback: OrderRequest | None = None,
    account: str | None = None,
    closing_params: Mapping[str, object] | None = None,
) -> Order:
    """An :class:`Order` from a ccxt order dict.

    Our client id comes back as ``clientOrderId`` for regular orders and as the raw
    ``clientAlgoId`` for Binance algo (conditional) orders; both are read. ``fallback`` fills
    what a terse acknowledgement omits (Bybit's create answer carries only the ids).
    ``closing_params``: the venue profile's ``closing_trigger_params``, which the bot sends
    with its protective orders; whether a conditional order carries them is read back into
    ``Order.close_on_trigger`` (:func:`carries_closing_params`).
    """
    info = raw.get("info") or {}
    if not isinstance(info, Mapping):
        # ccxt keeps the venue's answer in ``info``: a bare string there is a garbled reply
        raise UnexpectedResponse(
            f"order {raw.get('id') or (fallback.client_id if fallback else '?')}: the venue "
            f"answered a {type(info).__name__}, not an order object"
        )
    ids = ("clientOrderId", "clientAlgoId", "orderLinkId")
    found = [raw.get("clientOrderId"), *(info.get(k) for k in ids)]
    client_id: str = next((c for c in found if isinstance(c, str) and c), "")
    if not client_id and fallback is not None:
        client_id = fallback.client_id
    symbol = raw.get("symbol") or (fallback.symbol if fallback else None)
    where = f"order {client_id or raw.get('id')} ({symbol})"
    purpose = parse_purpose(client_id, account)
    trigger = positive_or_none(
        raw.get("triggerPrice") or raw.get("stopLossPrice") or raw.get("takeProfitPrice"),
        f"{where} triggerPrice",
    )
    if trigger is None and fallback is not None:
        trigger = fallback.trigger_price
    status = _STATUSES.get(str(raw.get("status")), OrderStatus.UNKNOWN)
    filled = opt_decimal(raw.get("filled"), f"{where} filled") or ZERO
    if status is OrderStatus.CANCELED and filled > ZERO:
        # Ended after trading part of its amount (a Binance MARKET order EXPIRED on its price
        # limit, a Bybit market order Cancelled with cumExecQty > 0): for the bot it is an
        # order that is done and traded ``filled``. Read as "canceled", its fill was never
        # recorded and the bot's own entry made the position "not opened by this bot": left
        # unmanaged, never re-protected.
        status = OrderStatus.FILLED
    amount = positive_or_none(raw.get("amount"), f"{where} amount")
    # Binance closePosition closes the whole position. Bybit's closeOnTrigger is a flag on a
    # sized order (the venue trims the quantity to the position at trigger time): only such an
    # order without a quantity (a whole-position TP/SL, qty "0") closes the whole position; one
    # of 0.1 on a position of 0.3 protects 0.1. (The bot's own Bybit stops carry the flag with
    # their size: capabilities.BYBIT closing_trigger_params; whether a sized one carries it is
    # close_on_trigger below.)
    # https://www.bybit.com/en/help-center/article/What-is-a-Close-On-Trigger-Order
    close_position = _truthy(info.get("closePosition")) or (
        amount is None and _truthy(info.get("closeOnTrigger"))
    )
    if amount is None and fallback is not None:
        amount = fallback.amount
    return Order(
        client_id=client_id,
        exchange_id=str(raw.get("id") or ""),
        symbol=str(symbol),
        side=_side(raw.get("side"), fallback, where),
        type=_order_type(raw, info, trigger, purpose, fallback),
        purpose=purpose,
        amount=amount,
        filled=filled,
        status=status,
        reduce_only=bool(raw.get("reduceOnly")) or (fallback.reduce_only if fallback else False),
        trigger_price=trigger,
        price=positive_or_none(raw.get("price"), f"{where} price"),
        average_price=positive_or_none(raw.get("average"), f"{where} average"),
        close_position=close_position or (fallback.close_position if fallback else False),
        timestamp_ms=int(raw.get("timestamp") or raw.get("lastUpdateTimestamp") or 0),
        trigger_by=_trigger_by(info) if trigger is not None else None,
        close_on_trigger=(
            carries_closing_params(info, closing_params) if trigger is not None else None
        ),
    )


def carries_closing_params(
    info: Mapping[str, Any], closing_params: Mapping[str, object] | None
) -> bool | None:
    """Whether the raw order ``info`` carries every one of the venue's ``closing_params`` (the
    flags that make it carried out whatever the free margin at trigger time: Bybit
    ``closeOnTrigger``, a JSON boolean in its order rows,
    https://bybit-exchange.github.io/docs/v5/order/open-order). ``None``: the venue has none
    (Binance), or the row does not say (the field missing, or neither a boolean nor
    "true"/"false"): unknown is not read as "without it", which would replace the stop at every
    job should the venue stop reporting the field (its replacement would read the same)."""
    if not closing_params:
        return None
    read = [(_flag(info.get(key)), bool(wanted)) for key, wanted in closing_params.items()]
    if any(value is not None and value != wanted for value, wanted in read):
        return False  # the venue says it lacks one
    if any(value is None for value, _ in read):
        return None
    return True


def _flag(value: object) -> bool | None:
    """A boolean as a venue writes one (JSON ``true``/``false``, or the strings); else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def fired_order_id(info: Mapping[str, Any], fired: FiredOrders, order: Order) -> str:
    """The id of the order that ``order``, a conditional order the venue reports fired (read
    as filled), placed in the matching engine: its raw row's ``fired.id_key``. A row that
    names none is garbled (a fired order always placed one): its fill is unknown, not 0."""
    value = info.get(fired.id_key)
    # (a JSON string on Binance, "" before it fires; an integer would do as well)
    readable = isinstance(value, str | int) and not isinstance(value, bool)
    text = str(value).strip() if readable else ""
    if not (text.isdigit() and int(text) > 0):
        raise UnexpectedResponse(
            f"order {order.client_id} ({order.symbol}): reported fired, but names no order it "
            f"placed ({fired.id_key} {value!r}): what it traded is unknown"
        )
    return text


def with_fired_outcome(order: Order, raw: object, placed_id: str, fired: FiredOrders) -> Order:
    """``order`` (a conditional order the venue reports fired) with what the order it placed
    traded: ``raw`` is ccxt's parse of that order, looked up by its id ``placed_id``.

    Its status is ccxt's; its executed quantity and average price are read from the venue's
    own fields (``fired.filled_key``, ``fired.average_key``): ccxt reads a missing executed
    quantity as 0. A reply that does not say what traded, or says it of another order, is
    garbled (:class:`UnexpectedResponse`: asked again, then unknown), never a fill of 0.
    Ended after trading part of its quantity, the placed order is a fill (see
    :func:`order_from_ccxt`); ended without trading (cancelled, expired, rejected), so did the
    stop: it did not fill.
    """
    info = raw.get("info") if isinstance(raw, Mapping) else None
    where = f"order {order.client_id} ({order.symbol}): the order it placed ({placed_id})"
    if not isinstance(raw, Mapping) or not isinstance(info, Mapping):
        raise UnexpectedResponse(f"{where}: the answer is not an order ({raw!r:.80})")
    if str(info.get("orderId")) != placed_id or raw.get("symbol") != order.symbol:
        raise UnexpectedResponse(
            f"{where}: the answer is about order {info.get('orderId')!r} of {raw.get('symbol')!r}"
        )
    status = _STATUSES.get(str(raw.get("status")), OrderStatus.UNKNOWN)
    if status is OrderStatus.UNKNOWN:
        raise UnexpectedResponse(
            f"{where}: status {info.get('status')!r} is not a known order status"
        )
    filled = to_decimal(info.get(fired.filled_key), f"{where} {fired.filled_key}")
    average = positive_or_none(info.get(fired.average_key), f"{where} {fired.average_key}")
    if filled < ZERO or (order.amount is not None and filled > order.amount):
        raise UnexpectedResponse(
            f"{where}: executed {filled} of an order of {order.amount or 'the position'}"
        )
    if filled > ZERO and average is None:
        raise UnexpectedResponse(
            f"{where}: executed {filled} at no price "
            f"({fired.average_key} {info.get(fired.average_key)!r})"
        )
    if status is OrderStatus.CANCELED and filled > ZERO:
        status = OrderStatus.FILLED
    elif status is OrderStatus.FILLED and filled == ZERO:
        raise UnexpectedResponse(f"{where}: filled, yet executed 0")
    return replace(
        order, status=status, filled=filled, average_price=average if filled > ZERO else None
    )


# Binance `workingType` (https://developers.binance.com/docs/derivatives/usds-margined-futures/
# trade/rest-api/New-Algo-Order: MARK_PRICE, CONTRACT_PRICE = the last price), Bybit `triggerBy`
# (https://bybit-exchange.github.io/docs/v5/enum#triggerby: LastPrice, IndexPrice, MarkPrice).
_TRIGGER_BY = {
    "MARK_PRICE": TriggerBy.MARK,
    "CONTRACT_PRICE": TriggerBy.LAST,
    "MARKPRICE": TriggerBy.MARK,
    "LASTPRICE": TriggerBy.LAST,
    "INDEXPRICE": TriggerBy.INDEX,
}


def _trigger_by(info: Mapping[str, Any]) -> TriggerBy | None:
    """The price that fires the order, as the venue names it; ``None`` when it names none the
    bot knows (Bybit "UNKNOWN" or "", a field missing): never guessed, since a stop placed by
    hand counts as protection only on the mark."""
    for key in ("workingType", "triggerBy"):
        value = info.get(key)
        if isinstance(value, str) and value:
            return _TRIGGER_BY.get(value.upper())
    return None


def require_resting(
    order: Order, raw: Mapping[str, Any], where: str, *, conditional: bool, client_id: bool
) -> None:
    """Refuse a row of an open-order list that cannot be a resting order.

    Unknown is never read as something else: a stop whose trigger is unreadable would count
    as "not protecting" (the bot would close the position), one whose client id is lost as a
    foreign order (a second stop), one without a size as a close-position order. ``where``
    names the list; ``conditional`` is True for the venue's conditional-order list (every row
    has a trigger); ``client_id`` is True where the venue gives every order a client id
    (Binance assigns one when none is sent; Bybit leaves ``orderLinkId`` empty).
    """
    info = raw.get("info") or {}
    name = f"{where}: order {order.exchange_id or '?'} ({order.client_id or 'no client id'})"
    # (Binance TRIGGERED, ccxt "closed": an algo order whose own order still works, e.g. a
    # stop-limit placed by hand; it may rest in the open list while that order does)
    if order.status is not OrderStatus.OPEN and info.get("algoStatus") != "TRIGGERED":
        status = next((info.get(k) for k in _STATUS_KEYS if k in info), raw.get("status"))
        if order.status is OrderStatus.UNKNOWN:
            raise UnexpectedResponse(f"{name}: status {status!r} is not a known order status")
        # A list of open orders that lists a finished one contradicts itself. Taken as it
        # came, a stop listed "cancelled" did not protect: the position was closed at market.
        raise UnexpectedResponse(f"{name}: status {status!r} in a list of open orders")
    if not order.exchange_id:
        raise UnexpectedResponse(f"{name}: no order id")
    ids = {k: info[k] for k in _CLIENT_ID_KEYS if k in info}
    if not ids or not all(isinstance(v, str) for v in ids.values()):
        # Bybit sends "" for an order placed without one, never null or nothing
        raise UnexpectedResponse(f"{name}: client order id {ids or None!r} is not a string")
    if client_id and not order.client_id:
        raise UnexpectedResponse(f"{name}: no client order id")
    if conditional and order.trigger_price is None:
        raw_trigger = next((info.get(k) for k in _TRIGGER_KEYS if k in info), None)
        raise UnexpectedResponse(f"{name}: trigger price {raw_trigger!r} is not a price")
    if order.amount is None and not order.close_position:
        raw_amount = next((info.get(k) for k in _AMOUNT_KEYS if k in info), raw.get("amount"))
        raise UnexpectedResponse(
            f"{name}: quantity {raw_amount!r} is not a size (and not a close-position order)"
        )


def require_same_listing(first: Order, again: Order, where: str) -> None:
    """An order an answer lists twice (Bybit may list a conditional order in both of its
    lists) must say the same both times: one order with two sizes, triggers or sides is a
    garbled answer (keeping either copy, the engine replaced a stop that was right)."""
    if again is first:
        return
    fields = ("side", "amount", "trigger_price", "price", "close_position")
    differ = [f for f in fields if getattr(first, f) != getattr(again, f)]
    if differ:
        shown = ", ".join(f"{f} {getattr(first, f)} / {getattr(again, f)}" for f in differ)
        raise UnexpectedResponse(
            f"{where}: order {first.exchange_id} ({first.client_id or 'no client id'}) is "
            f"listed twice with different contents: {shown}"
        )


def require_unique_client_ids(orders: Sequence[Order], where: str) -> None:
    """One client id is one order: a list holding it under two order ids is garbled. Believed,
    the duplicate of the bot's one stop was "a second stop" to cancel, by that client id: the
    cancel took the stop itself, and the position was naked. (Orders without a client id,
    Bybit's placed by hand, are not compared.)"""
    ids: dict[str, str] = {}
    for o in orders:
        if not o.client_id:
            continue
        known = ids.setdefault(o.client_id, o.exchange_id)
        if known != o.exchange_id:
            raise UnexpectedResponse(
                f"{where}: client id {o.client_id} is listed as two orders ({known} and "
                f"{o.exchange_id})"
            )


# The venues' raw names of the fields above (Binance regular, Binance algo, Bybit), for messages.
_STATUS_KEYS = ("algoStatus", "status", "orderStatus")
_TRIGGER_KEYS = ("triggerPrice", "stopPrice")
_AMOUNT_KEYS = ("quantity", "origQty", "qty")
_CLIENT_ID_KEYS = ("clientOrderId", "clientAlgoId", "orderLinkId")


def _order_type(
    raw: Mapping[str, Any],
    info: Mapping[str, Any],
    trigger: Decimal | None,
    purpose: OrderPurpose | None,
    fallback: OrderRequest | None,
) -> OrderType:
    if trigger is None:
        if fallback is not None and raw.get("type") is None:
            return fallback.type
        return OrderType.LIMIT if raw.get("type") == "limit" else OrderType.MARKET
    # Binance names the conditional type (algo `orderType`, regular `type`/`origType`). Bybit's
    # `stopOrderType` is "Stop" for any plain conditional order, so our purpose code decides.
    labels = {
        str(info.get(k, "")).upper() for k in ("orderType", "origType", "type", "stopOrderType")
    }
    if any("TRAILING" in label for label in labels):  # Binance TRAILING_STOP_MARKET, Bybit
        return OrderType.TRAILING_STOP_MARKET  # TrailingStop: the trigger moves with the price
    # A limit order once triggered: Binance STOP / TAKE_PROFIT, Bybit orderType Limit (its
    # stopOrderType "Stop" names any conditional order, so it is not read here).
    limit = bool(
        {str(info.get(k, "")).upper() for k in ("orderType", "origType", "type")} & _LIMIT_TYPES
    )
    if any("TAKE_PROFIT" in label or "TAKEPROFIT" in label for label in labels):
        return OrderType.TAKE_PROFIT_LIMIT if limit else OrderType.TAKE_PROFIT_MARKET
    if labels & {"STOP_MARKET", "STOPLOSS", "PARTIALSTOPLOSS"}:
        return OrderType.STOP_LIMIT if limit else OrderType.STOP_MARKET
    if purpose is OrderPurpose.TAKE_PROFIT:
        return OrderType.TAKE_PROFIT_MARKET
    if purpose is OrderPurpose.STOP_LOSS:
        return OrderType.STOP_MARKET
    if raw.get("takeProfitPrice"):
        return OrderType.TAKE_PROFIT_LIMIT if limit else OrderType.TAKE_PROFIT_MARKET
    if fallback is not None and fallback.type.is_conditional:
        return fallback.type
    return OrderType.STOP_LIMIT if limit else OrderType.STOP_MARKET


_LIMIT_TYPES = frozenset({"LIMIT", "STOP", "TAKE_PROFIT"})


def _side(value: object, fallback: OrderRequest | None, where: str) -> OrderSide:
    if value in ("buy", "sell"):
        return OrderSide(str(value))
    if fallback is not None:
        return fallback.side
    raise UnexpectedResponse(f"{where}: side must be 'buy' or 'sell', got {value!r}")


def _truthy(value: object) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


# -- positions and balance -------------------------------------------------------------------


class CreateOrderArgs(NamedTuple):
    """Positional arguments and params of ``ccxt.Exchange.create_order``."""

    symbol: str
    type: str
    side: str
    amount: float | None
    price: float | None
    params: dict[str, object]


def create_order_args(
    request: OrderRequest,
    *,
    amount: str | None,
    price: str | None,
    trigger: str | None,
    mark_trigger_params: Mapping[str, object],
    closing_trigger_params: Mapping[str, object] | None = None,
) -> CreateOrderArgs:
    """ccxt ``create_order`` arguments for a request whose numbers are already exchange strings.

    Conditional orders go out as ccxt ``stopLossPrice``/``takeProfitPrice`` market orders (ccxt
    routes them to Binance's Algo API, ``POST /fapi/v1/algoOrder``) with the venue's mark-price
    trigger params; a sized reduce-only one (the bot's stops and take-profits) also with
    ``closing_trigger_params`` (Bybit ``closeOnTrigger``: carried out whatever the free margin
    at trigger time, see capabilities.BYBIT). ``closePosition`` and ``reduceOnly`` are
    exclusive on Binance.
    """
    params: dict[str, object] = {"clientOrderId": request.client_id}
    if request.close_position:
        params["closePosition"] = True
    elif request.reduce_only:
        params["reduceOnly"] = True
    ccxt_type = "market"
    if request.type is OrderType.LIMIT:
        ccxt_type = "limit"
        params["timeInForce"] = "GTC"
    elif request.type.is_conditional:
        key = "stopLossPrice" if request.type is OrderType.STOP_MARKET else "takeProfitPrice"
        params[key] = float(_required(trigger, request, "trigger price"))
        params.update(mark_trigger_params)
        if request.reduce_only and not request.close_position:
            params.update(closing_trigger_params or {})
    return CreateOrderArgs(
        symbol=request.symbol,
        type=ccxt_type,
        side=request.side.value,
        amount=float(amount) if amount is not None else None,
        price=float(_required(price, request, "price")) if ccxt_type == "limit" else None,
        params=params,
    )


def _required(value: str | None, request: OrderRequest, what: str) -> str:
    if value is None:
        raise ValueError(f"{request.client_id}: a {request.type} order needs a {what}")
    return value


def order_from_request(request: OrderRequest, status: OrderStatus) -> Order:
    return Order(
        client_id=request.client_id,
        exchange_id="",
        symbol=request.symbol,
        side=request.side,
        type=request.type,
        purpose=request.purpose,
        amount=request.amount,
        filled=Decimal(0),
        status=status,
        reduce_only=request.reduce_only,
        trigger_price=request.trigger_price,
        price=request.price,
        close_position=request.close_position,
    )


def same_order(found: Order, request: OrderRequest) -> bool:
    """Whether an order found by client id is the one ``request`` describes (a retry's echo)."""
    if found.side is not request.side:
        return False
    if request.amount is not None and found.amount is not None and found.amount != request.amount:
        return False
    return request.trigger_price is None or found.trigger_price == request.trigger_price
