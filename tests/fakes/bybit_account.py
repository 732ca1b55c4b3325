"""Bybit v5 account and position routes (private): API-key and account info, wallet balance,
margin mode (account-wide on a unified account, per symbol on a classic one), position list,
leverage, position mode, closed PnL and fee rates.

https://bybit-exchange.github.io/docs/v5/user/apikey-info, .../account/account-info,
.../account/wallet-balance, .../account/set-margin-mode, .../position, .../position/leverage,
.../position/cross-isolate, .../position/position-mode, .../position/close-pnl
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from bot.domain.enums import ForcedKind, MarginMode
from bot.domain.orders import ForcedClose
from bot.domain.position import Position
from bot.errors import OrderRejected

from .bybit_wire import MSG, BybitBase, BybitError, BybitReq, params_error
from .loopback_core import ZERO, Json, money, plain

RouteMap = dict[tuple[str, str], tuple[Callable[[BybitReq], Json], bool]]
_UNIFIED_MODES = {
    "REGULAR_MARGIN": MarginMode.CROSS,
    "ISOLATED_MARGIN": MarginMode.ISOLATED,
}


class BybitAccountRoutes(BybitBase):
    """Account reads and settings over the backend's balance, positions and leverage."""

    def _account_routes(self) -> RouteMap:
        signed: dict[tuple[str, str], Callable[[BybitReq], Json]] = {
            ("GET", "/v5/user/query-api"): self._query_api,
            ("GET", "/v5/account/info"): self._account_info,
            ("GET", "/v5/account/wallet-balance"): self._wallet_balance,
            ("GET", "/v5/account/fee-rate"): self._fee_rate,
            ("POST", "/v5/account/set-margin-mode"): self._set_margin_mode,
            ("GET", "/v5/position/list"): self._position_list,
            ("POST", "/v5/position/set-leverage"): self._set_leverage,
            ("POST", "/v5/position/switch-isolated"): self._switch_isolated,
            ("POST", "/v5/position/switch-mode"): self._switch_mode,
            ("GET", "/v5/position/closed-pnl"): self._closed_pnl_list,
            ("GET", "/v5/execution/list"): self._execution_list,
        }
        return {key: (fn, True) for key, fn in signed.items()}

    # -- account -----------------------------------------------------------------------------

    def _query_api(self, req: BybitReq) -> Json:
        return {
            "id": "1",
            "note": "loopback",
            "apiKey": self._key,
            "readOnly": 0,
            "secret": "",
            "permissions": {
                "ContractTrade": ["Order", "Position"],
                "Spot": [],
                "Wallet": [],
                "Options": [],
                "Derivatives": [],
                "CopyTrading": [],
                "BlockTrade": [],
                "Exchange": [],
                "NFT": [],
                "Affiliate": [],
            },
            "ips": ["127.0.0.1"],
            "type": 1,
            "deadlineDay": 90,
            "expiredAt": "",
            "createdAt": "2025-01-01T00:00:00Z",
            "unified": 0,
            "uta": 1,
            "userID": 1,
            "inviterID": 0,
            "vipLevel": "No VIP",
            "mktMakerLevel": "0",
            "affiliateID": 0,
            "rsaPublicKey": "",
            "isMaster": True,
        }

    def _account_info(self, req: BybitReq) -> Json:
        mode = self._account_margin_mode()
        return {
            "unifiedMarginStatus": self.unified_margin_status,
            "marginMode": "ISOLATED_MARGIN" if mode is MarginMode.ISOLATED else "REGULAR_MARGIN",
            "isMasterTrader": False,
            "spotHedgingStatus": "OFF",
            "updatedTime": str(req.now_ms),
            "dcpStatus": "OFF",
            "timeWindow": 10,
            "smpGroup": 0,
        }

    def _wallet_balance(self, req: BybitReq) -> Json:
        account_type = req.need("accountType")
        if account_type != "UNIFIED":
            raise params_error(f"accountType only support UNIFIED, got {account_type}")
        bal = self.backend.fetch_balance()
        upnl = im = mm = ZERO
        for sym, pos in self._positions().items():
            row = self._position_numbers(sym, pos)
            upnl += row["upnl"]
            im += row["im"]
            mm += row["mm"]
        # ccxt derives free = walletBalance - (locked + totalPositionIM + totalOrderIM) when
        # availableToWithdraw is empty (Bybit deprecated it in 2025): keep the backend's number.
        available = bal.available
        assert available is not None, "the simulated backend always knows what is available"
        used = max(ZERO, bal.wallet - available)
        equity = bal.wallet + upnl
        coin = {
            "coin": bal.asset,
            "equity": money(equity),
            "usdValue": money(equity),
            "walletBalance": money(bal.wallet),
            "free": "",
            "locked": "0",
            "spotHedgingQty": "0",
            "borrowAmount": "0",
            "availableToWithdraw": "",
            "availableToBorrow": "",
            "accruedInterest": "0",
            "totalOrderIM": "0",
            "totalPositionIM": money(used),
            "totalPositionMM": money(mm),
            "unrealisedPnl": money(upnl),
            "cumRealisedPnl": "0",
            "bonus": "0",
            "marginCollateral": True,
            "collateralSwitch": True,
        }
        account = {
            "accountType": "UNIFIED",
            "totalEquity": money(equity),
            "totalWalletBalance": money(bal.wallet),
            "totalMarginBalance": money(equity),
            "totalAvailableBalance": money(available),
            "totalPerpUPL": money(upnl),
            "totalInitialMargin": money(im),
            "totalMaintenanceMargin": money(mm),
            "accountIMRate": money(im / equity) if equity > 0 else "0",
            "accountMMRate": money(mm / equity) if equity > 0 else "0",
            "accountLTV": "0",
            "coin": [coin],
        }
        return {"list": [account]}

    def _fee_rate(self, req: BybitReq) -> Json:
        rows = []
        if self._linear(req):
            for sym in self._symbols_of(req):
                inst = self.backend.instrument(sym)
                rows.append(
                    {
                        "symbol": inst.base + inst.quote,
                        "takerFeeRate": plain(inst.taker_fee),
                        "makerFeeRate": plain(inst.maker_fee),
                    }
                )
        return {"list": rows}

    def _set_margin_mode(self, req: BybitReq) -> Json:
        raw = req.need("setMarginMode")
        if raw == "PORTFOLIO_MARGIN":
            reason = {"reasonCode": "3400000", "reasonMsg": "not supported by the loopback server"}
            raise _margin_failed(reason)
        mode = _UNIFIED_MODES.get(raw)
        if mode is None:
            raise params_error(f"setMarginMode invalid: {raw}")
        # Bybit documents no "not modified" code for the account-wide switch: the same mode is
        # a success with no reasons (unverified on the live venue).
        if mode is self._account_margin_mode() and self._margin_mode is not None:
            return {"reasons": []}
        try:
            for sym in self._symbols:  # account-wide: the backend applies it to every symbol
                self.backend.set_margin_mode(sym, mode)
        except OrderRejected as exc:
            raise _margin_failed({"reasonCode": "3400046", "reasonMsg": str(exc)}) from exc
        self._margin_mode = mode
        return {"reasons": []}

    # -- positions ---------------------------------------------------------------------------

    def _position_numbers(self, sym: str, pos: Position) -> dict[str, Decimal]:
        inst = self.backend.instrument(sym)
        mark = self._mark(sym) or pos.entry_price
        notional = abs(pos.qty) * mark
        bracket = inst.bracket_for(notional)
        return {
            "mark": mark,
            "value": abs(pos.qty) * pos.entry_price,
            "upnl": pos.unrealized_pnl(mark),
            "im": notional / pos.leverage if pos.leverage > 0 else ZERO,
            "mm": max(ZERO, notional * bracket.maint_margin_rate - bracket.maint_amount),
            "risk_cap": bracket.notional_cap,
            "risk_id": Decimal(inst.brackets.index(bracket) + 1),
        }

    def _position_row(self, sym: str, pos: Position | None, now: int) -> Json:
        inst = self.backend.instrument(sym)
        leverage = self.backend.fetch_leverage(sym)
        if pos is None:
            return {
                "positionIdx": 0,
                "riskId": 1,
                "riskLimitValue": plain(inst.brackets[0].notional_cap),
                "symbol": inst.base + inst.quote,
                "side": "",
                "size": "0",
                "avgPrice": "0",
                "positionValue": "0",
                "tradeMode": 0,
                "autoAddMargin": 0,
                "positionStatus": "Normal",
                "leverage": plain(leverage),
                "markPrice": plain(self._mark(sym) or ZERO),
                "liqPrice": "",
                "bustPrice": "",
                "positionIM": "0",
                "positionMM": "0",
                "positionBalance": "0",
                "tpslMode": "Full",
                "takeProfit": "0",
                "stopLoss": "0",
                "trailingStop": "0",
                "unrealisedPnl": "0",
                "curRealisedPnl": "0",
                "cumRealisedPnl": "0",
                "adlRankIndicator": 0,
                "isReduceOnly": False,
                "createdTime": str(now),
                "updatedTime": str(now),
                "seq": -1,
            }
        n = self._position_numbers(sym, pos)
        isolated = pos.margin_mode is MarginMode.ISOLATED
        return {
            "positionIdx": 0,
            "riskId": int(n["risk_id"]),
            "riskLimitValue": plain(n["risk_cap"]),
            "symbol": inst.base + inst.quote,
            "side": "Buy" if pos.qty > 0 else "Sell",
            "size": plain(abs(pos.qty)),
            "avgPrice": plain(pos.entry_price),
            "positionValue": money(n["value"]),
            "tradeMode": 0,  # deprecated on UTA: the account's margin mode decides
            "autoAddMargin": 0,
            "positionStatus": "Normal",
            "leverage": plain(pos.leverage),
            "markPrice": plain(n["mark"]),
            "liqPrice": plain(pos.liquidation_price) if pos.liquidation_price else "",
            "bustPrice": "",
            "positionIM": money(n["im"]),
            "positionMM": money(n["mm"]),
            "positionBalance": money(pos.isolated_margin if isolated else n["im"]),
            "tpslMode": "Full",
            "takeProfit": "0",
            "stopLoss": "0",
            "trailingStop": "0",
            "unrealisedPnl": money(n["upnl"]),
            "curRealisedPnl": "0",
            "cumRealisedPnl": "0",
            "adlRankIndicator": 2,
            "isReduceOnly": False,
            "createdTime": str(now),
            "updatedTime": str(now),
            "seq": 1,
        }

    def _position_list(self, req: BybitReq) -> Json:
        category = req.need("category")
        if not self._linear(req):
            return {"category": category, "list": [], "nextPageCursor": ""}
        if req.get("symbol") is None and req.get("settleCoin") is None:
            raise params_error("symbol or settleCoin is required")
        positions = self._positions()
        rows = []
        for sym in self._symbols_of(req):
            pos = positions.get(sym)
            if pos is None and req.get("symbol") is None:
                continue  # by settleCoin Bybit lists open positions only
            if req.get("settleCoin") not in (None, self.backend.instrument(sym).quote):
                continue
            row = self._position_row(sym, pos, req.now_ms)
            if pos is None and self.hedged(sym):
                # hedge mode: one flat row per side (the backend holds one-way positions only,
                # and refuses a switch while one is open)
                rows += [{**row, "positionIdx": 1}, {**row, "positionIdx": 2}]
                continue
            rows.append(row)
        return {"category": category, "list": rows, "nextPageCursor": ""}

    # -- settings ----------------------------------------------------------------------------

    def _set_leverage(self, req: BybitReq) -> Json:
        self._linear(req)
        sym = self._symbol(req)
        buy, sell = req.dec("buyLeverage"), req.dec("sellLeverage")
        if buy is None or sell is None:
            raise params_error("buyLeverage and sellLeverage are required")
        if buy != sell and not self.hedged(sym):
            raise params_error("buyLeverage must be equal to sellLeverage in one-way mode")
        if buy != buy.to_integral_value():
            raise params_error("leverage: the loopback backend takes whole leverage only")
        if buy == self.backend.fetch_leverage(sym):
            raise BybitError(110043)
        try:
            self.backend.set_leverage(sym, int(buy))
        except OrderRejected as exc:
            if exc.code == -2027:
                raise BybitError(110013) from exc
            if exc.code == -4028:
                raise params_error(f"leverage invalid: {exc}") from exc
            raise
        return {}

    def _switch_isolated(self, req: BybitReq) -> Json:
        """Per-symbol cross/isolated: classic accounts only; unified accounts answer 100028."""
        if self.unified_margin_status >= 3:
            raise BybitError(100028)
        self._linear(req)
        sym = self._symbol(req)
        trade_mode = req.int_("tradeMode")
        if trade_mode not in (0, 1):
            raise params_error("tradeMode must be 0 (cross) or 1 (isolated)")
        mode = MarginMode.ISOLATED if trade_mode == 1 else MarginMode.CROSS
        if mode is self._account_margin_mode() and self._margin_mode is not None:
            raise BybitError(110026)
        self.backend.set_margin_mode(sym, mode)
        self._margin_mode = mode
        return {}

    def _switch_mode(self, req: BybitReq) -> Json:
        self._linear(req)
        if req.get("symbol") is None and req.get("coin") is None:
            raise params_error("symbol or coin is required")
        sym = self._symbol(req) if req.get("symbol") is not None else None  # symbol first
        mode = req.int_("mode")
        if mode not in (0, 3):
            raise params_error("mode must be 0 (one-way) or 3 (hedge)")
        hedge = mode == 3
        now = self.hedged(sym) if sym is not None else self.hedge_mode
        if hedge == now and (sym is not None or not self.hedged_symbols):
            raise BybitError(110025)
        if self._positions():
            raise BybitError(110024)
        if any(self.backend.fetch_open_orders(s) for s in self._symbols):
            raise BybitError(110028)
        if sym is None:
            self.hedge_mode, self.hedged_symbols = hedge, set()
        elif hedge:
            self.hedged_symbols.add(sym)
        else:
            self.hedged_symbols.discard(sym)
        return {}

    # -- executions --------------------------------------------------------------------------

    def _execution_list(self, req: BybitReq) -> Json:
        """Trade history, the backend's liquidation (``BustTrade``) and ADL (``AdlTrade``)
        executions only: the account's own trades are not listed by this loopback. The
        window is the venue's: "startTime and endTime are not passed, return 7 days by
        default; Only startTime is passed, return range between startTime and startTime+7
        days; Only endTime is passed, return range between endTime-7 days and endTime; If both
        are passed, the rule is endTime - startTime <= 7 days" (longer: refused, as a params
        error), over "the past 730 days".
        https://bybit-exchange.github.io/docs/v5/order/execution"""
        category = req.need("category")
        start, end = _execution_window(req.int_("startTime"), req.int_("endTime"), req.now_ms)
        limit = min(max(req.int_("limit", 50) or 50, 1), 100)
        rows: list[Json] = []
        for sym in self._symbols_of(req):
            closes = self.backend.fetch_forced_closes(sym, start) or []
            rows += _execution_rows(self._sid(sym), closes, start, end)
        rows.sort(key=lambda r: -int(str(r["execTime"])))  # newest first
        return {"category": category, "list": rows[:limit], "nextPageCursor": ""}

    # -- closed PnL --------------------------------------------------------------------------

    def _closed_pnl_list(self, req: BybitReq) -> Json:
        category = req.need("category")
        wanted = {self._sid(s) for s in self._symbols_of(req)}
        start, end = req.int_("startTime"), req.int_("endTime")
        limit = min(max(req.int_("limit", 50) or 50, 1), 100)
        rows = [
            r
            for r in reversed(self._closed_pnl)
            if r["symbol"] in wanted
            and (start is None or int(r["updatedTime"]) >= start)
            and (end is None or int(r["updatedTime"]) <= end)
        ][:limit]
        return {"category": category, "list": rows, "nextPageCursor": ""}


_WEEK_MS = 7 * 86_400_000
_EXECUTIONS_KEPT_MS = 730 * 86_400_000


def _execution_window(start: int | None, end: int | None, now_ms: int) -> tuple[int, int]:
    """The times ``GET /v5/execution/list`` answers for these parameters (see its route)."""
    if start is None:  # no start: the 7 days before the end, or before now
        end = now_ms if end is None else end
        start = end - _WEEK_MS
    elif end is None:
        end = start + _WEEK_MS
    elif end - start > _WEEK_MS:
        raise params_error("endTime - startTime must be within 7 days")
    return max(start, now_ms - _EXECUTIONS_KEPT_MS), end


def _execution_rows(sid: str, closes: list[ForcedClose], start: int, end: int) -> list[Json]:
    rows: list[Json] = []
    for n, c in enumerate(closes):
        if not start <= c.timestamp_ms <= end:
            continue
        rows.append(
            {
                "symbol": sid,
                "orderId": f"forced-{c.timestamp_ms}-{n}",
                "orderLinkId": "",
                "side": "Sell",
                "execType": "AdlTrade" if c.kind is ForcedKind.ADL else "BustTrade",
                "execQty": str(c.qty),
                "execPrice": "0",
                "execTime": str(c.timestamp_ms),
                "isMaker": False,
            }
        )
    return rows


def _margin_failed(reason: dict[str, str]) -> BybitError:
    return BybitError(3400045, MSG[3400045], result={"reasons": [reason]})
