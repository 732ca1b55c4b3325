"""The settings a positions read needs, read once for every position (real ccxt, loopback).

Binance's v3 positionRisk rows carry no leverage and Bybit's no margin mode: the adapter asked
for the setting once per position held (``GET /fapi/v1/symbolConfig``, weight 5, which answers
every symbol's row whatever it is asked for; ``GET /v5/account/info``, the account's one mode).
The engine reads the positions again after each contract's orders, so a tick that opened N
contracts made N(N+1)/2 such reads. Now one per positions read, each row still checked as the
read of one contract's setting checks it: a row missing, of another market, or a setting of 0
is an unreadable account, never a default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal as D
from typing import Any

import pytest

from bot import errors
from bot.clock import LiveClock
from bot.domain.enums import MarginMode, OrderPurpose, OrderSide, OrderType
from bot.domain.orders import OrderRequest
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.instruments import load_instruments
from bot.sim.exchange import SimulatedExchange
from tests.contract.test_ccxt_loopback import ACCOUNT, KEY, SECRET, RecordingClock
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import loopback_adapter
from tests.fakes.loopback_core import Fault, LoopbackServer

BTC, ETH, SOL, BNB = (f"{b}/USDT:USDT" for b in ("BTC", "ETH", "SOL", "BNB"))
MARKS = {BTC: D(60000), ETH: D(3000), SOL: D(150), BNB: D(600)}
LEVERAGE = {BTC: 2, ETH: 3, SOL: 4, BNB: 5}
SERVERS: dict[str, type[LoopbackServer]] = {"binanceusdm": LoopbackBinance, "bybit": LoopbackBybit}
SETTINGS = {"binanceusdm": "/fapi/v1/symbolConfig", "bybit": "/v5/account/info"}


class Venue:
    """Four long positions, each at its own leverage setting, and the adapter pointed at the
    loopback venue that holds them."""

    def __init__(self, venue: str) -> None:
        bundled = load_instruments(venue)
        self.sim = SimulatedExchange(
            {s: bundled[s] for s in MARKS},
            LiveClock(),
            starting_balance=D(100000),
            margin_mode=MarginMode.ISOLATED,
        )
        for n, (sym, mark) in enumerate(MARKS.items()):
            self.sim.set_mark(sym, mark)
            self.sim.set_leverage(sym, LEVERAGE[sym])
            qty = self.sim.instrument(sym).floor_qty(D(2000) / mark)
            entry = OrderRequest(
                f"{ACCOUNT}-en-{n}", sym, OrderSide.BUY, OrderType.MARKET, OrderPurpose.ENTRY, qty,
                False,
            )  # fmt: skip
            self.sim.place_order(entry)
        self.server = SERVERS[venue](
            self.sim, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=list(MARKS)
        )
        self.server.start()
        self.adapter: CcxtExchange = loopback_adapter(
            venue,
            self.server.base_url,
            RecordingClock(),
            key=KEY,
            secret=SECRET,
            account=ACCOUNT,
            symbols=list(MARKS),
        )
        self.venue = venue

    def close(self) -> None:
        self.adapter.exchange.close()
        self.server.stop()

    def settings_reads(self, since: int) -> list[dict[str, str]]:
        """The params of the settings reads since request ``since``. (ccxt's bybit client
        also asks /v5/account/info once, with /v5/user/query-api, the first time it checks
        that the account is unified: not a settings read.)"""
        new = self.server.requests[since:]
        warm = sum(1 for r in new if r.path == "/v5/user/query-api")
        reads = [r.params for r in new if r.method == "GET" and r.path == SETTINGS[self.venue]]
        return reads[warm:]


@pytest.fixture(params=sorted(SERVERS))
def venue(request: pytest.FixtureRequest) -> Iterator[Venue]:
    v = Venue(str(request.param))
    yield v
    v.close()
    assert v.server.errors == []


def test_one_settings_read_answers_every_position(venue: Venue) -> None:
    first = len(venue.server.requests)
    held = venue.adapter.fetch_positions(list(MARKS))
    assert {s: (p.qty > 0, p.leverage, p.margin_mode) for s, p in held.items()} == {
        s: (True, D(LEVERAGE[s]), MarginMode.ISOLATED) for s in MARKS
    }
    reads = venue.settings_reads(first)
    assert len(reads) == 1, reads  # (one per position before: 4)
    # Binance: the symbol-less request, every symbol's row in one answer
    assert "symbol" not in reads[0]


Edit = Callable[[Any], Any]


def _rows_edited(edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Edit:
    return lambda reply: edit([dict(row) for row in reply])


def _without_eth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["symbol"] != "ETHUSDT"]


def _eth_at_zero(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "leverage": 0} if r["symbol"] == "ETHUSDT" else r for r in rows]


def _eth_named_btc(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "symbol": "BTCUSDT"} if r["symbol"] == "ETHUSDT" else r for r in rows]


@pytest.mark.parametrize(
    "edit",
    [_without_eth, _eth_at_zero, _eth_named_btc],
    ids=["a row missing", "a setting of 0", "a row of another market"],
)
def test_every_row_of_the_one_read_is_checked(edit: Callable[..., Any]) -> None:
    """ETH is the second position held: its row is checked as the first one's."""
    venue = Venue("binanceusdm")
    try:
        venue.server.inject(
            Fault(SETTINGS["binanceusdm"], "GET", kind="edit", edit=_rows_edited(edit), times=100)
        )
        with pytest.raises(errors.AccountUnreadable, match=r"ETH/USDT:USDT leverage setting"):
            venue.adapter.fetch_positions(list(MARKS))
    finally:
        venue.close()
    assert venue.server.errors == []
