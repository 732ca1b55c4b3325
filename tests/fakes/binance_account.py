"""Binance USD-M account and settings routes: leverage brackets, commission, account, balance,
position risk (v2 and v3), symbol config, leverage, margin type, position side, multi-assets
mode and API-key restrictions (all signed)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from bot.domain.enums import ForcedKind, MarginMode
from bot.domain.position import Position

from .binance_wire import BinanceBase, BinanceError, _max_notional, _money, _num, _Req, _s
from .loopback_core import ZERO, Json

RouteMap = dict[tuple[str, str], tuple[Callable[[_Req], Json], bool]]
_WEEK_MS = 7 * 86_400_000


class BinanceAccountRoutes(BinanceBase):
    """Account reads and settings over the backend's balance, positions and leverage."""

    def _account_routes(self) -> RouteMap:
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
            ("GET", "/fapi/v1/forceOrders"): self._force_orders,
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
        }
        return {key: (fn, True) for key, fn in signed.items()}

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

    def _force_orders(self, req: _Req) -> Json:
        """User's Force Orders: the backend's liquidations and ADL closes as Binance lists them
        (client id ``autoclose-<time>`` for a liquidation, ``adl_autoclose`` for an ADL),
        ``startTime`` to ``endTime``, at most ``limit`` (default 50, max 100), oldest first.
        The page names one window ("If startTime is not sent, data within 7 days before
        endTime can be queried") and the record's age ("Only support querying data in the past
        90 days"); of a start with or without an end it says nothing, and the loopback promises
        no more than that week: a start alone answers the 7 days after it, a start and an end
        further apart are refused, so no test passes on a reading the venue does not document.
        https://developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/Users-Force-Orders
        """
        start, end = req.int_("startTime"), req.int_("endTime")
        if start is None:
            end = req.now_ms if end is None else end
            start = end - _WEEK_MS
        elif end is None:
            end = start + _WEEK_MS
        elif end - start > _WEEK_MS:
            raise BinanceError(-1127, "More than 168 hours between startTime and endTime.")
        start = max(start, req.now_ms - 90 * 86_400_000)
        limit = min(max(req.int_("limit", 50) or 50, 1), 100)
        rows: list[Json] = []
        for sym in self._symbols_of(req):
            closes = self.backend.fetch_forced_closes(sym, start) or []
            sid = self._sid(sym)
            for n, c in enumerate(closes):
                if not start <= c.timestamp_ms <= end:
                    continue
                adl = c.kind is ForcedKind.ADL
                rows.append(
                    {
                        "orderId": 9_000_000 + n,
                        "symbol": sid,
                        "status": "FILLED",
                        "clientOrderId": "adl_autoclose" if adl else f"autoclose-{c.timestamp_ms}",
                        "price": "0",
                        "avgPrice": "0",
                        "origQty": str(c.qty),
                        "executedQty": str(c.qty),
                        "cumQuote": "0",
                        "timeInForce": "GTC" if adl else "IOC",
                        "type": "LIMIT",
                        "reduceOnly": False,
                        "closePosition": False,
                        "side": "SELL",
                        "positionSide": "BOTH",
                        "stopPrice": "0",
                        "workingType": "CONTRACT_PRICE",
                        "origType": "LIMIT",
                        "time": c.timestamp_ms,
                        "updateTime": c.timestamp_ms,
                    }
                )
        return rows[:limit]

    def _wallet(self) -> dict[str, Decimal]:
        bal = self.backend.fetch_balance()
        upnl = maint = isolated = ZERO
        for sym, pos in self._positions().items():
            row = self._position_row(sym, pos, 0, v2=False)
            upnl += Decimal(row["unRealizedProfit"])
            maint += Decimal(row["maintMargin"])
            isolated += Decimal(row["isolatedWallet"])
        margin_balance = bal.wallet + upnl
        available = bal.available
        assert available is not None, "the simulated backend always knows what is available"
        return {
            "wallet": bal.wallet,
            "upnl": upnl,
            "margin": margin_balance,
            "maint": maint,
            # Binance: available = margin balance - initial margin; the backend knows available.
            "initial": max(ZERO, margin_balance - available),
            "available": available,
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
        """Symbol Configuration: a list of rows, the one of ``symbol`` when it is sent (it is
        optional), else one per symbol; weight 5 either way.
        https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Symbol-Config
        """
        rows = []
        for sym in self._symbols_of(req):
            inst, lev = self.backend.instrument(sym), self.backend.fetch_leverage(sym)
            mode = self._margin_mode(sym)
            rows.append(
                {
                    "symbol": inst.base + inst.quote,
                    "marginType": "ISOLATED" if mode is MarginMode.ISOLATED else "CROSSED",
                    "isAutoAddMargin": "false",  # (a string in the documented answer)
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
