"""Binance USD-M market-data routes: ping, time, exchangeInfo, premium index, funding info and
history, tickers, klines and mark-price klines (all public)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from .binance_wire import (
    _CONDITIONAL_TYPES,
    _INTERVAL,
    _UNIT_MS,
    BinanceBase,
    BinanceError,
    _decimals,
    _num,
    _Req,
    _s,
)
from .loopback_core import CandleKind, Json

RouteMap = dict[tuple[str, str], tuple[Callable[[_Req], Json], bool]]


class BinanceMarketRoutes(BinanceBase):
    """Public market data. Candles come from :meth:`set_candles`; the mark stands in for the
    last price (the backend port has no last-trade price)."""

    def _market_routes(self) -> RouteMap:
        public: dict[tuple[str, str], Callable[[_Req], Json]] = {
            ("GET", "/fapi/v1/ping"): lambda req: {},
            ("GET", "/fapi/v1/time"): lambda req: {"serverTime": req.now_ms},
            ("GET", "/fapi/v1/exchangeInfo"): self._exchange_info,
            ("GET", "/fapi/v1/premiumIndex"): self._premium_index,
            ("GET", "/fapi/v1/fundingInfo"): self._funding_info,
            ("GET", "/fapi/v1/fundingRate"): self._funding_rate_history,
            ("GET", "/fapi/v1/ticker/price"): self._ticker_price,
            ("GET", "/fapi/v1/ticker/24hr"): self._ticker_24hr,
            ("GET", "/fapi/v1/klines"): lambda req: self._klines(req, "trade"),
            ("GET", "/fapi/v1/markPriceKlines"): lambda req: self._klines(req, "mark"),
        }
        return {key: (fn, False) for key, fn in public.items()}

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
            "symbols": [self._symbol_info(s) for s in self._symbols if s not in self.delisted],
        }

    def _symbol_info(self, symbol: str) -> Json:
        inst = self.backend.instrument(symbol)
        sid, tick, step = inst.base + inst.quote, _s(inst.tick_size), _s(inst.step_size)
        lot = {"minQty": _s(inst.min_qty), "maxQty": "10000000", "stepSize": step}
        return {
            "symbol": sid,
            "pair": sid,
            "contractType": "PERPETUAL",
            "deliveryDate": self.delivery_dates.get(symbol, 4133404800000),
            "onboardDate": 1569398400000,
            "status": self.market_status.get(symbol, "TRADING"),
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
                {
                    "filterType": "MARKET_LOT_SIZE",
                    **lot,
                    "maxQty": _s(inst.max_order_qty) if inst.max_order_qty else lot["maxQty"],
                },
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

    def _funding_rate_history(self, req: _Req) -> Json:
        """Settled rates from :meth:`set_funding_history`: ``symbol``, ``startTime``,
        ``endTime`` (both inclusive), ``limit`` (default 100, max 1000); oldest first; without
        ``startTime`` the latest ``limit`` rows, with it the first ``limit`` from it
        (https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Get-Funding-Rate-History)."""
        sym = self._symbol(req)
        limit = min(max(req.int_("limit", 100) or 100, 1), 1000)
        start, end = req.int_("startTime"), req.int_("endTime")
        rows = [
            (ts, rate)
            for ts, rate in self._funding_history.get(sym, [])
            if ts <= req.now_ms and (start is None or ts >= start) and (end is None or ts <= end)
        ]
        rows = rows[:limit] if start is not None else rows[-limit:]
        return [
            {"symbol": self._sid(sym), "fundingTime": ts, "fundingRate": _s(rate), "markPrice": "0"}
            for ts, rate in rows
        ]

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
