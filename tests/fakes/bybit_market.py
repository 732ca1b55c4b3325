"""Bybit v5 market-data routes (public): server time, instruments-info, risk-limit, tickers,
kline, mark-price-kline and funding history. Only ``category=linear`` holds instruments; the
other categories answer empty lists, as a venue with no such markets would (ccxt's
``load_markets`` asks for spot, linear, inverse and option).

https://bybit-exchange.github.io/docs/v5/market/instrument, .../market/risk-limit,
.../market/tickers, .../market/kline, .../market/mark-kline, .../market/history-fund-rate
"""

from __future__ import annotations

from collections.abc import Callable

from .bybit_wire import _INTERVAL_MS, BybitBase, BybitReq, params_error
from .loopback_core import CandleKind, Json, decimals, plain

RouteMap = dict[tuple[str, str], tuple[Callable[[BybitReq], Json], bool]]
# instruments-info's status filter: one of these (https://bybit-exchange.github.io/docs/v5/enum#status)
STATUSES = ("PreLaunch", "Trading", "Delivering", "Closed")
_MAX_FUNDING_ROWS = 200


class BybitMarketRoutes(BybitBase):
    """Public market data. Candles come from :meth:`set_candles`, funding history from
    :meth:`set_funding_history`; the mark stands in for the last and index prices (the backend
    port has neither)."""

    def _market_routes(self) -> RouteMap:
        public: dict[tuple[str, str], Callable[[BybitReq], Json]] = {
            ("GET", "/v5/market/time"): self._time,
            ("GET", "/v5/market/instruments-info"): self._instruments,
            ("GET", "/v5/market/risk-limit"): self._risk_limit,
            ("GET", "/v5/market/tickers"): self._tickers,
            ("GET", "/v5/market/kline"): lambda req: self._kline(req, "trade"),
            ("GET", "/v5/market/mark-price-kline"): lambda req: self._kline(req, "mark"),
            ("GET", "/v5/market/funding/history"): self._funding,
        }
        return {key: (fn, False) for key, fn in public.items()}

    def _time(self, req: BybitReq) -> Json:
        return {"timeSecond": str(req.now_ms // 1000), "timeNano": str(req.now_ms * 1_000_000)}

    def _instruments(self, req: BybitReq) -> Json:
        linear = self._linear(req)
        category = req.need("category")
        status = req.get("status")
        if status is not None and status not in STATUSES:
            raise params_error(f"status invalid: {status}")
        wanted = self._symbols_of(req) if linear else []
        rows = [
            self._instrument_row(sym)
            for sym in wanted
            if self.market_status.get(sym, "Trading") == (status or "Trading")
        ]
        return {"category": category, "list": rows, "nextPageCursor": ""}

    def _instrument_row(self, symbol: str) -> Json:
        inst = self.backend.instrument(symbol)
        interval = self.backend.fetch_funding(symbol).interval_hours
        step, tick = plain(inst.step_size), plain(inst.tick_size)
        return {
            "symbol": inst.base + inst.quote,
            "contractType": "LinearPerpetual",
            "status": self.market_status.get(symbol, "Trading"),
            "baseCoin": inst.base,
            "quoteCoin": inst.quote,
            "settleCoin": inst.quote,
            "launchTime": "1584230400000",
            "deliveryTime": str(self.delivery_times.get(symbol, 0)),
            "deliveryFeeRate": "",
            "priceScale": str(decimals(inst.tick_size)),
            "leverageFilter": {
                "minLeverage": "1",
                "maxLeverage": plain(inst.max_leverage),
                "leverageStep": "0.01",
            },
            "priceFilter": {
                "minPrice": plain(inst.min_price) if inst.min_price is not None else tick,
                "maxPrice": plain(inst.max_price) if inst.max_price is not None else "1999999.8",
                "tickSize": tick,
            },
            "lotSizeFilter": {
                "maxOrderQty": "1190",
                "minOrderQty": plain(inst.min_qty),
                "qtyStep": step,
                "postOnlyMaxOrderQty": "1190",
                "maxMktOrderQty": plain(inst.max_order_qty) if inst.max_order_qty else "500",
                "minNotionalValue": plain(inst.min_notional),
            },
            "unifiedMarginTrade": True,
            "fundingInterval": int(interval * 60),
            "copyTrading": "both",
            "upperFundingRate": "0.005",
            "lowerFundingRate": "-0.005",
            "isPreListing": False,
            "preListingInfo": None,
            "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
            "displayName": "",
        }

    def _risk_limit(self, req: BybitReq) -> Json:
        category = req.need("category")
        rows = []
        if self._linear(req):
            for sym in self._symbols_of(req):
                inst = self.backend.instrument(sym)
                for i, b in enumerate(inst.brackets):
                    rows.append(
                        {
                            "id": i + 1,
                            "symbol": inst.base + inst.quote,
                            "riskLimitValue": plain(b.notional_cap),
                            "maintenanceMargin": plain(b.maint_margin_rate),
                            "initialMargin": plain(1 / b.max_leverage),
                            "isLowestRisk": 1 if i == 0 else 0,
                            "maxLeverage": plain(b.max_leverage),
                            "mmDeduction": plain(b.maint_amount) if i else "",
                        }
                    )
        return {"category": category, "list": rows, "nextPageCursor": ""}

    def _tickers(self, req: BybitReq) -> Json:
        # No per-row time, as on the venue: only the envelope's ``time`` (see _success).
        category = req.need("category")
        rows = []
        if self._linear(req):
            for sym in self._symbols_of(req):
                mark = plain(self.backend.fetch_mark_price(sym))  # no mark yet: backend error
                funding = self.backend.fetch_funding(sym)
                rows.append(
                    {
                        "symbol": self._sid(sym),
                        "lastPrice": mark,
                        "indexPrice": mark,
                        "markPrice": mark,
                        "prevPrice24h": mark,
                        "price24hPcnt": "0",
                        "highPrice24h": mark,
                        "lowPrice24h": mark,
                        "prevPrice1h": mark,
                        "openInterest": "0",
                        "openInterestValue": "0",
                        "turnover24h": "0",
                        "volume24h": "0",
                        "fundingRate": plain(funding.rate),
                        "nextFundingTime": str(funding.next_settlement_ms or 0),
                        "fundingIntervalHour": plain(funding.interval_hours),
                        "predictedDeliveryPrice": "",
                        "basisRate": "",
                        "deliveryFeeRate": "",
                        "deliveryTime": "0",
                        "ask1Size": "0",
                        "bid1Price": mark,
                        "ask1Price": mark,
                        "bid1Size": "0",
                        "basis": "",
                    }
                )
        return {"category": category, "list": rows}

    def _kline(self, req: BybitReq, kind: CandleKind) -> Json:
        category = req.need("category")
        sym = self._symbol(req)
        interval = req.need("interval")
        step = _INTERVAL_MS.get(interval)
        if step is None:
            raise params_error(f"interval invalid: {interval}")
        if self._candle_spacing(sym, kind, step) != step:
            raise params_error(f"interval invalid: {interval} (loopback {kind} rows differ)")
        limit = min(max(req.int_("limit", 200) or 200, 1), 1000)
        # Newest first, as Bybit sends them; ccxt sorts them back.
        picked = self._pick_candles(
            sym, kind, req.now_ms, req.int_("start"), req.int_("end"), limit
        )
        out = []
        for ts, o, h, low, c, vol in reversed(picked):
            row = [str(ts), plain(o), plain(h), plain(low), plain(c)]
            if kind == "trade":
                row += [plain(vol), plain(vol * c)]
            out.append(row)
        return {"symbol": self._sid(sym), "category": category, "list": out}

    def _funding(self, req: BybitReq) -> Json:
        category = req.need("category")
        sym = self._symbol(req)
        start, end = req.int_("startTime"), req.int_("endTime")
        if start is not None and end is None:
            # https://bybit-exchange.github.io/docs/v5/market/history-fund-rate
            raise params_error("endTime is required when startTime is passed")
        limit = min(max(req.int_("limit", _MAX_FUNDING_ROWS) or 1, 1), _MAX_FUNDING_ROWS)
        rows = self._funding_history.get(sym, [])
        picked = [
            r
            for r in rows
            if r[0] <= req.now_ms
            and (start is None or r[0] >= start)
            and (end is None or r[0] <= end)
        ][-limit:]
        out = [
            {
                "symbol": self._sid(sym),
                "fundingRate": plain(rate),
                "fundingRateTimestamp": str(ts),
            }
            for ts, rate in reversed(picked)
        ]
        return {"category": category, "list": out}
