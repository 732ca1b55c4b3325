"""History endpoints for the loopback Binance USD-M server: klines and mark-price klines at
several timeframes per contract, and funding-rate history.

:class:`LoopbackBinanceHistory` is :class:`~tests.fakes.binance_loopback.LoopbackBinance` with
these routes replaced (the base serves one timeframe per contract):

* ``GET /fapi/v1/klines`` and ``GET /fapi/v1/markPriceKlines``: ``symbol``, ``interval``,
  ``startTime``, ``endTime`` (both inclusive, on the open time), ``limit`` (default 500, max
  1500); oldest first; the still-forming bar is served too, as on Binance.

``set_funding`` serves funding-rate history on the base server's ``GET /fapi/v1/fundingRate``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

# Only public names: the Binance fake is being split into endpoint-group modules.
from tests.fakes.binance_loopback import BinanceError, CandleKind, CandleRow, LoopbackBinance

Json = Any
_Req = Any  # the server's parsed request: .need(name), .int_(name, default), .now_ms
_INTERVAL = re.compile(r"^([1-9][0-9]?)([mhdwM])$")
_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000, "M": 2_592_000_000}


def _s(x: Decimal) -> str:
    """A decimal as Binance writes it: plain notation, no exponent."""
    return format(x, "f")


class LoopbackBinanceHistory(LoopbackBinance):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._series: dict[tuple[str, CandleKind, int], list[CandleRow]] = {}
        super().__init__(*args, **kwargs)

    def set_series(
        self, symbol: str, kind: CandleKind, interval: str, rows: Sequence[CandleRow]
    ) -> None:
        """Serve ``rows`` (open ms, o, h, l, c, volume) as ``interval`` candles of ``kind``."""
        step = _step(interval)
        for i in range(1, len(rows)):
            if rows[i][0] <= rows[i - 1][0]:
                raise ValueError(f"set_series {symbol} {interval}: row {i} not increasing")
        if any(r[0] % step for r in rows):
            raise ValueError(f"set_series {symbol} {interval}: open times off the grid")
        self._series[(symbol, kind, step)] = list(rows)

    def set_funding(self, symbol: str, rows: Sequence[tuple[int, Decimal]]) -> None:
        """Serve ``rows`` (funding time ms, rate; any order) on ``/fapi/v1/fundingRate``, as
        :meth:`set_funding_history` does (the base server's route)."""
        self.set_funding_history(symbol, sorted(rows))

    def _route_table(self) -> dict[tuple[str, str], Any]:
        table = super()._route_table()
        table[("GET", "/fapi/v1/klines")] = (lambda req: self._serve_klines(req, "trade"), False)
        table[("GET", "/fapi/v1/markPriceKlines")] = (
            lambda req: self._serve_klines(req, "mark"),
            False,
        )
        return table

    def _serve_klines(self, req: _Req, kind: CandleKind) -> Json:
        sym = self._symbol(req)
        step = _step(req.need("interval"))
        rows = self._series.get((sym, kind, step), [])
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


def _step(interval: str) -> int:
    match = _INTERVAL.match(interval)
    if match is None:
        raise BinanceError(-1120, "Invalid interval.")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]
