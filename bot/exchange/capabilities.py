"""What the bot needs from a venue, and what each supported venue's ccxt class provides.

Venue differences are data here (a :class:`VenueProfile` per venue), not ``if venue == ...``
branches in the adapter. :func:`check_capabilities` compares the bot's needs with a ccxt
instance's ``has`` table and ``features`` detail and raises :class:`bot.errors.NotSupported`
naming the first missing capability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from bot.domain.enums import ForcedKind
from bot.domain.instrument import MarginModel
from bot.errors import NotSupported
from bot.exchange.forced_probe import DAY_MS, ForcedProbe
from bot.exchange.paging import Paging


@dataclass(frozen=True, slots=True)
class FlatProbe:
    """The venue's raw per-symbol position endpoint, which answers a flat contract with a row
    of size 0 (positive knowledge that a position is gone; ccxt's unified list drops it)."""

    method: str  # ccxt implicit API method
    params: Mapping[str, object]  # besides ``symbol`` (the market id)
    rows_path: str  # dotted path of the row list in the answer; "" = the answer
    size_key: str  # the row's size field


@dataclass(frozen=True, slots=True)
class FundingCap:
    """Where the venue publishes a contract's funding rate cap and floor (fractions per
    interval): in the raw market ``info`` (``in_market``, read by ``load_markets``; ``method``,
    ``params`` and ``rows_path`` then name the raw per-symbol endpoint that answers the same row
    now) or in the ``info`` of the contract's row of ccxt's ``fetch_funding_intervals``."""

    in_market: bool
    cap_key: str
    floor_key: str
    method: str = ""  # ccxt implicit API method (in_market only)
    params: Mapping[str, object] = field(default_factory=dict)  # besides ``symbol``
    rows_path: str = ""


@dataclass(frozen=True, slots=True)
class TickerProbe:
    """The venue's raw ticker endpoint, for a venue whose ticker rows carry no time: the time
    of the answer is in its envelope (``time_key``), which ccxt's ``fetch_ticker`` drops."""

    method: str  # ccxt implicit API method
    params: Mapping[str, object]  # besides ``symbol`` (the market id)
    rows_path: str  # dotted path of the row list in the answer
    time_key: str  # the envelope's time (epoch ms)


@dataclass(frozen=True, slots=True)
class UntradedMarkets:
    """For a venue whose market list leaves out the contracts it does not trade (Bybit's
    instruments-info lists Trading ones unless asked for a ``status``): how to ask for them, one
    status at a time, so that a contract settling is read as withdrawn (as Binance lists it,
    with its status), not as a market the venue never had."""

    method: str  # a ccxt method that reads and parses the venue's markets, given params
    params: Mapping[str, object]  # besides the status
    status_param: str
    statuses: tuple[str, ...]  # the venue's statuses of a contract it no longer trades


@dataclass(frozen=True, slots=True)
class FiredOrders:
    """For a venue whose conditional order, once fired, is a row of its own book that does not
    say what it traded: the order it placed in the matching engine does. ``id_key`` names
    that order's id in the conditional order's raw row (looked up with ccxt's ``fetch_order``
    by id, the regular book); ``time_key`` when it fired (epoch ms). ``filled_key`` and
    ``average_key`` are the placed order's raw executed quantity and average price. An order
    that ended without a fill is no longer found ``unfilled_kept_ms`` after it was made: one
    not found later than that after the firing traded nothing."""

    id_key: str
    time_key: str
    filled_key: str
    average_key: str
    unfilled_kept_ms: int


@dataclass(frozen=True, slots=True)
class IpBan:
    """How the venue answers an IP address it banned without saying until when, and how long
    the bot then holds every request (``SharedPacer.hold``): the least the venue documents,
    after which one request finds out whether the ban is over.

    The answer is HTTP ``status`` without any of the headers the venue's API puts on its own
    answers (``api_headers``, a lower-case name prefix): the venue's front door, not its API
    (whose rate-limit answers name their reset time)."""

    status: int
    api_headers: str
    hold_s: float


@dataclass(frozen=True, slots=True)
class VenueProfile:
    """Per-venue facts the adapter needs and ccxt does not unify.

    ``liquidation_fee`` is a fraction of notional, used when the market does not state one.
    ``benign_codes`` maps a settings call to the venue codes that mean "nothing to change".
    """

    name: str  # ccxt exchange id
    liquidation_fee: Decimal
    liquidation_fee_key: str | None  # key in the raw market ``info`` that overrides it
    mark_trigger_params: Mapping[str, object]
    lookup_client_id_param: str  # fetch_order/cancel_order param naming a client id
    lookup_extra: Mapping[str, object]
    close_position_stops: bool  # Binance ``closePosition=true`` conditional orders
    demo_trading: bool  # ccxt ``enable_demo_trading`` reaches a demo venue
    key_permissions: bool  # the venue reports API key permissions
    multi_assets_mode: bool  # the venue has a multi-assets margin switch
    flat_probe: FlatProbe
    forced_probe: ForcedProbe
    benign_codes: Mapping[str, frozenset[int]] = field(default_factory=dict)
    # Look an order up by client id through the order list (``fetch_open_orders`` with the
    # client-id param) instead of ``fetch_order``: ccxt's bybit ``fetch_order(None, ...)``
    # sends ``orderId=None`` literally, which outranks ``orderLinkId`` on Bybit.
    lookup_by_order_list: bool = False
    # ccxt's bybit ``fetch_positions`` refuses a list of more than one symbol (ArgumentsRequired):
    # read the account's open positions (``settleCoin``) in one call and pick the contracts.
    positions_one_symbol_per_call: bool = False
    # Every answer of the venue is an object with this key (Bybit ``retCode``): a 2xx answer
    # without it is garbled, not a rejection.
    reply_envelope_key: str | None = None
    # How the open-order lists (regular and conditional) are paged; None: one answer lists
    # every open order of the symbol.
    open_order_pages: Paging | None = None
    # The venue gives every order a client id (Binance mints one when none is sent, web and app
    # orders included), so an open order listed without one is a garbled row.
    client_ids: bool = False
    # Where the venue publishes the funding rate cap of a contract; None: nowhere (the
    # adapter's hard bound alone applies).
    funding_cap: FundingCap | None = None
    # Read the last price here instead of ccxt's ``fetch_ticker`` (whose ``timestamp`` is the
    # venue's own time of the ticker where the venue gives one: Binance ``closeTime``).
    ticker_probe: TickerProbe | None = None
    # Where the raw market (ccxt ``market["info"]``) says why it is not trading (ccxt's
    # ``active`` only says whether), and when the venue settles a perpetual it delists: ccxt
    # names no expiry for a perpetual, so the raw field is read (see mapping.settlement_ms).
    status_keys: tuple[str, ...] = ("status",)
    delivery_key: str | None = None
    # None: the venue's market list names the contracts it does not trade too (Binance).
    untraded_markets: UntradedMarkets | None = None
    # None: a conditional order that fired says itself what it traded (Bybit: cumExecQty,
    # avgPrice on the order).
    fired_orders: FiredOrders | None = None
    # Params of the bot's sized reduce-only conditional orders (its stop-losses and
    # take-profits) besides the mark trigger: what makes the venue carry them out whatever
    # the account's free margin at trigger time (Bybit ``closeOnTrigger``).
    closing_trigger_params: Mapping[str, object] = field(default_factory=dict)
    # None: the venue's ban answers say when the ban ends (Binance 418 ``Retry-After``).
    ip_ban: IpBan | None = None
    # Settled funding rates one funding-history read returns at most (ccxt
    # ``fetch_funding_rate_history`` ``limit``): Binance GET /fapi/v1/fundingRate takes up to
    # 1000 (https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Get-Funding-Rate-History),
    # Bybit GET /v5/market/funding/history up to 200
    # (https://bybit-exchange.github.io/docs/v5/market/history-fund-rate).
    funding_history_rows: int = 1000
    # The venue's margin mode is the account's, one for every contract: one read gives every
    # position's (``fetch_margin_mode`` of any contract). False: read per contract.
    account_margin_mode: bool = False

    def trigger_lookup_params(self, client_id: str, conditional: bool) -> dict[str, object]:
        """Params for ``fetch_order``/``cancel_order`` that address an order by client id."""
        params: dict[str, object] = {self.lookup_client_id_param: client_id, **self.lookup_extra}
        if conditional:
            params["trigger"] = True
        return params

    @property
    def margin_model(self) -> MarginModel:
        """The venue's liquidation formula (bot.domain.margin), as the bundled loader sets it."""
        return MarginModel.for_exchange(self.name)


# Binance USD-M: the liquidation clearance fee is published per symbol in exchangeInfo
# (`liquidationFee`, e.g. "0.012500" for BTCUSDT); 1.25 % is the documented default.
# https://www.binance.com/en/support/faq/liquidation-protocols-360033525271
# Conditional orders trigger on the last price unless `workingType=MARK_PRICE`
# (https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/New-Algo-Order).
BINANCE_USDM = VenueProfile(
    name="binanceusdm",
    # exchangeInfo: `status` (USD-M; `contractStatus` on COIN-M) TRADING, PENDING_TRADING,
    # PRE_DELIVERING, DELIVERING, DELIVERED, PRE_SETTLE, SETTLING, CLOSE; `deliveryDate`
    # 4133404800000 (2100-01-01) on a perpetual until its delisting is scheduled
    # (https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Exchange-Information).
    status_keys=("status", "contractStatus"),
    delivery_key="deliveryDate",
    liquidation_fee=Decimal("0.0125"),
    liquidation_fee_key="liquidationFee",
    mark_trigger_params={"workingType": "MARK_PRICE"},
    lookup_client_id_param="clientOrderId",
    lookup_extra={},
    close_position_stops=True,
    demo_trading=True,
    key_permissions=True,
    multi_assets_mode=True,
    # v2 positionRisk with a symbol lists its row even when flat (positionAmt "0"); v3 lists
    # only symbols with a position or open orders.
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Position-Information-V2
    flat_probe=FlatProbe("fapiPrivateV2GetPositionRisk", {}, "", "positionAmt"),
    # User's Force Orders: liquidation orders carry a client id starting "autoclose-", ADL
    # orders "adl_autoclose"; at most 100 rows (default 50). "If startTime is not sent, data
    # within 7 days before endTime can be queried"; "Only support querying data in the past 90
    # days". The page says no more of a start with or without an end: a week per request, with
    # its end, is the one window it names.
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Users-Force-Orders
    forced_probe=ForcedProbe(
        method="fapiPrivateGetForceOrders",
        params={},
        since_param="startTime",
        until_param="endTime",
        window_ms=7 * DAY_MS,
        kept_ms=90 * DAY_MS,
        limit=100,
        rows_path="",
        kind_key="clientOrderId",
        kinds={"autoclose-": ForcedKind.LIQUIDATION, "adl_autoclose": ForcedKind.ADL},
        qty_key="executedQty",
        time_key="updateTime",
    ),
    # -4046 "No need to change margin type", -4059 "No need to change position side".
    benign_codes={"set_margin_mode": frozenset({-4046}), "set_position_mode": frozenset({-4059})},
    # No paging: GET /fapi/v1/openOrders and GET /fapi/v1/openAlgoOrders take no limit or cursor
    # and answer every open (algo) order of the symbol in one array.
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Current-All-Open-Orders
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Current-All-Algo-Open-Orders
    open_order_pages=None,
    client_ids=True,
    # GET /fapi/v1/fundingInfo lists the symbols whose cap, floor or interval was adjusted
    # (adjustedFundingRateCap/adjustedFundingRateFloor); the others are not listed.
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Get-Funding-Rate-Info
    funding_cap=FundingCap(
        in_market=False, cap_key="adjustedFundingRateCap", floor_key="adjustedFundingRateFloor"
    ),
    # A conditional (algo) order that fired is algoStatus TRIGGERED, then FINISHED ("filled or
    # canceled in the matching engine"); its row names the order it placed (`actualOrderId`,
    # "" before; `triggerTime`, 0 before) and no executed quantity: ccxt reads it as filled 0
    # at no price. That order's GET /fapi/v1/order (weight 1) has `executedQty` and
    # `avgPrice`. Neither endpoint finds an order CANCELED or EXPIRED without a fill 3 days
    # after it was made (exchange-facts 2;
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Query-Algo-Order,
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Query-Order,
    # https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Event-Algo-Order-Update).
    fired_orders=FiredOrders(
        id_key="actualOrderId",
        time_key="triggerTime",
        filled_key="executedQty",
        average_key="avgPrice",
        unfilled_kept_ms=3 * 86_400_000,
    ),
)

# Bybit takes a liquidated position over at the bankruptcy price; the margin between liquidation
# and bankruptcy price is lost. No separate fee is published: charge the taker fee (0.055 %) as
# the closing cost (unverified on the live venue). Triggers: `triggerBy=MarkPrice`
# (https://bybit-exchange.github.io/docs/v5/order/create-order). fetch_order only sees the last
# 500 orders, which ccxt makes the caller acknowledge.
BYBIT = VenueProfile(
    name="bybit",
    funding_history_rows=200,
    # A unified account has one margin mode (GET /v5/account/info ``marginMode``:
    # ISOLATED_MARGIN, REGULAR_MARGIN, PORTFOLIO_MARGIN; set for the account by POST
    # /v5/account/set-margin-mode, no symbol), which ccxt's bybit ``fetch_margin_mode`` reads
    # whatever the symbol; the position rows carry none (``tradeMode`` is deprecated).
    # https://bybit-exchange.github.io/docs/v5/account/account-info, exchange-facts 3.2
    account_margin_mode=True,
    # instruments-info: `status` PreLaunch, Trading, Delivering, Closed
    # (https://bybit-exchange.github.io/docs/v5/enum#status); a linear perpetual being
    # delisted keeps `Trading` with `deliveryTime` set to
    # the delisting time ("0" otherwise), which ccxt reads as an expiry for futures only
    # (https://bybit-exchange.github.io/docs/v5/market/instrument).
    delivery_key="deliveryTime",
    # Asked without a status, instruments-info lists Trading contracts only: a contract
    # delivering (settled at its delisting) is absent from ccxt's markets, as a symbol Bybit
    # never had. ccxt's own reader of the linear category (the one load_markets uses, which
    # parses the rows into its markets) passes the status filter on; the filter takes one of
    # the documented statuses (https://bybit-exchange.github.io/docs/v5/market/instrument).
    untraded_markets=UntradedMarkets(
        method="fetch_future_markets",
        params={"category": "linear"},
        status_param="status",
        statuses=("Delivering", "Closed"),
    ),
    liquidation_fee=Decimal("0.00055"),
    liquidation_fee_key=None,
    mark_trigger_params={"triggerBy": "MarkPrice"},
    # A conditional order "does not occupy the margin. If the margin is insufficient after the
    # conditional order is triggered, the order will be cancelled"; `closeOnTrigger` "can be
    # used to ensure your stop loss reduces your position regardless of current available
    # margin" (other active orders of the contract are cancelled or reduced to make room)
    # (https://bybit-exchange.github.io/docs/v5/order/create-order; ccxt's bybit
    # create_order_request: "bybit recommends a True value for closeOnTrigger to avoid failing
    # due to insufficient available margin"). The bot keeps 0.1 % of the balance free
    # (risk/margin_cap.py): a stop firing on a losing, fully allocated account is the case it
    # exists for. Sent with the stop's size and reduceOnly, so it stays a sized stop (the venue
    # trims it to the position at trigger time); only qty "0" would close the whole position
    # (ccxt_orders.order_from_ccxt reads it so). Read back into Order.close_on_trigger: a stop
    # an older version placed without it is replaced (engine.planner.plan_protection).
    closing_trigger_params={"closeOnTrigger": True},
    # The IP limit, 600 requests in any 5 s from one address: "If you encounter the error
    # '403, access too frequent', it indicates that your IP has exceeded the allowed request
    # frequency. In this case, you should terminate all HTTP sessions and wait for at least 10
    # minutes. The ban will be lifted automatically" (https://bybit-exchange.github.io/docs/v5/
    # rate-limit; the older pages: "usually 30 minutes. Continually violating the limit will
    # result in a permanent ban"). The answer names no end (no Retry-After, and none of the
    # X-Bapi-Limit-* headers of the per-UID limit, whose answer is retCode 10006), and ccxt
    # maps the 403 to RateLimitExceeded (bybit httpExceptions). Without a hold every read was
    # retried five times into the ban (40 answers 403 in one guard and one tick) and every job
    # did the same: held the least Bybit documents, then one request a job probes it.
    ip_ban=IpBan(status=403, api_headers="x-bapi-limit", hold_s=600.0),
    lookup_client_id_param="orderLinkId",
    lookup_extra={"acknowledged": True},
    close_position_stops=False,
    demo_trading=True,
    key_permissions=False,
    multi_assets_mode=False,
    # position/list with a symbol answers a flat contract with a row of size "0".
    # https://bybit-exchange.github.io/docs/v5/position
    flat_probe=FlatProbe("privateGetV5PositionList", {"category": "linear"}, "result.list", "size"),
    # Trade history: execType BustTrade is a liquidation takeover, AdlTrade an
    # auto-deleveraging (https://bybit-exchange.github.io/docs/v5/order/execution,
    # https://bybit-exchange.github.io/docs/v5/enum#exectype); at most 100 rows a page. "Only
    # startTime is passed, return range between startTime and startTime+7 days"; "If both are
    # passed, the rule is endTime - startTime <= 7 days"; a unified account's "past 730 days".
    forced_probe=ForcedProbe(
        method="privateGetV5ExecutionList",
        params={"category": "linear"},
        since_param="startTime",
        until_param="endTime",
        window_ms=7 * DAY_MS,
        kept_ms=730 * DAY_MS,
        limit=100,
        rows_path="result.list",
        kind_key="execType",
        kinds={"BustTrade": ForcedKind.LIQUIDATION, "AdlTrade": ForcedKind.ADL},
        qty_key="execQty",
        time_key="execTime",
    ),
    # 110043 leverage not modified, 110025 position mode not modified, 110026 margin mode not
    # modified (https://bybit-exchange.github.io/docs/v5/error).
    benign_codes={
        "set_leverage": frozenset({110043}),
        "set_position_mode": frozenset({110025}),
        "set_margin_mode": frozenset({110026}),
    },
    lookup_by_order_list=True,
    positions_one_symbol_per_call=True,
    reply_envelope_key="retCode",
    # GET /v5/order/realtime (and orderFilter=StopOrder) pages: `limit` 1..50 (default 20) rows,
    # newest first, and `nextPageCursor` to send back as `cursor`
    # (https://bybit-exchange.github.io/docs/v5/order/open-order). A linear symbol holds at
    # most 500 active and 10 conditional orders, 11 pages of 50: 20 pages leave room.
    open_order_pages=Paging(
        size=50, cursor_param="cursor", cursor_key="nextPageCursor", max_pages=20
    ),
    # instruments-info gives every linear contract its upperFundingRate/lowerFundingRate
    # (https://bybit-exchange.github.io/docs/v5/market/instrument); ccxt keeps the row in
    # market['info'].
    funding_cap=FundingCap(
        in_market=True,
        cap_key="upperFundingRate",
        floor_key="lowerFundingRate",
        method="publicGetV5MarketInstrumentsInfo",
        params={"category": "linear"},
        rows_path="result.list",
    ),
    # GET /v5/market/tickers rows carry no time; the answer's envelope does ("time", ms), and
    # ccxt's bybit parse_ticker reads a per-row "time" only, so its ticker has no timestamp
    # (https://bybit-exchange.github.io/docs/v5/market/tickers).
    ticker_probe=TickerProbe(
        method="publicGetV5MarketTickers",
        params={"category": "linear"},
        rows_path="result.list",
        time_key="time",
    ),
)

VENUES: Mapping[str, VenueProfile] = {p.name: p for p in (BINANCE_USDM, BYBIT)}

# Unified ccxt methods the adapter calls, by ``has`` key.
REQUIRED_METHODS: tuple[str, ...] = (
    "fetchBalance",
    "fetchPositions",
    "fetchOpenOrders",
    "fetchOrder",
    "createOrder",
    "cancelOrder",
    "fetchLeverageTiers",
    "fetchLeverage",
    "setLeverage",
    "setMarginMode",
    "setPositionMode",
    "fetchFundingRate",
    "fetchOHLCV",
    "fetchMarkOHLCV",
)

# (path in features['swap']['linear']['createOrder'], what the bot uses it for)
REQUIRED_ORDER_FEATURES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("stopLossPrice",), "resting stop-loss orders (createOrder stopLossPrice)"),
    (("takeProfitPrice",), "resting take-profit orders (createOrder takeProfitPrice)"),
    (("triggerPriceType", "mark"), "mark-price triggers (createOrder triggerPriceType.mark)"),
)


def venue_profile(name: str) -> VenueProfile:
    """Return the profile of a supported venue, or raise ``NotSupported`` listing them."""
    try:
        return VENUES[name]
    except KeyError:
        supported = ", ".join(sorted(VENUES))
        raise NotSupported(
            f"exchange {name!r} is not supported by the live adapter; supported: {supported}"
        ) from None


def missing_capabilities(exchange: Any) -> list[str]:
    """Names of the capabilities the bot needs that ``exchange`` (a ccxt instance) lacks."""
    has: Mapping[str, Any] = getattr(exchange, "has", {}) or {}
    missing = [f"{name} (ccxt has['{name}'])" for name in REQUIRED_METHODS if not has.get(name)]
    features = getattr(exchange, "features", {}) or {}
    create = _dig(features, ("swap", "linear", "createOrder"))
    for path, what in REQUIRED_ORDER_FEATURES:
        if not _dig(create, path):
            missing.append(what)
    return missing


def check_capabilities(exchange: Any) -> None:
    """Raise ``NotSupported`` naming every capability the bot needs that ``exchange`` lacks."""
    missing = missing_capabilities(exchange)
    if missing:
        name = getattr(exchange, "id", type(exchange).__name__)
        raise NotSupported(
            f"exchange {name!r} lacks capabilities the bot needs: {'; '.join(missing)}"
        )


def _dig(tree: object, path: tuple[str, ...]) -> Any:
    node: Any = tree
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node
