"""Positions the trader opens or grows by hand, through real ccxt on the loopback Binance and
Bybit servers (the engine over the live adapter; the trader acts through raw ccxt calls on the
same server, as the venue's app would).

The bot opens a long; the trader closes it by hand, then opens a short by hand: the short is not
the bot's (reported ``foreign``, no order of the bot's on it), whether or not a re-entry cooldown
runs (with one the bot closed it; without, it reversed it into its own long). The trader adds to
the bot's long: reported (``added``) and protected whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

from bot.clock import LiveClock
from bot.config.loader import load_policy
from bot.domain.enums import EventKind, MarginMode, OrderPurpose
from bot.domain.market import FundingInfo
from bot.engine.contracts import ContractSpec
from bot.engine.tick import Engine
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.instruments import load_instruments
from bot.ports.market import CandleWindow
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import loopback_adapter
from tests.unit.test_engine import LIMITS

ROOT = Path(__file__).resolve().parents[2]
BTC = "BTC/USDT:USDT"
HOUR = 3_600_000
KEY, SECRET, ACCOUNT = "own-key-1a2b3c", "own-secret-4d5e6f7a8b", "t"


class NowMarket:
    """Hourly candles of a seeded random walk that end at the current hour (fresh data)."""

    def __init__(self, n: int = 400) -> None:
        now = LiveClock().now_ms()
        t0 = now - now % HOUR
        rng = np.random.default_rng(7)
        self.close = 60000 * np.exp(np.cumsum(rng.normal(0, 0.006, n)))
        self.ts = t0 - HOUR * np.arange(n, 0, -1, dtype=np.int64)
        self.open = np.concatenate([[self.close[0]], self.close[:-1]])
        self.high = np.maximum(self.open, self.close) * 1.002
        self.low = np.minimum(self.open, self.close) * 0.998

    def closed_candles(self, symbol: str, tf_ms: int, count: int, now_ms: int) -> CandleWindow:
        end = int(np.searchsorted(self.ts, now_ms - tf_ms, side="right"))
        sl = slice(max(0, end - count), end)
        return CandleWindow(
            self.ts[sl], self.open[sl], self.high[sl], self.low[sl], self.close[sl], tf_ms
        )

    def funding(self, symbol: str, now_ms: int, lookback: int) -> FundingInfo:
        return FundingInfo(D("0.0001"), D(8), now_ms + HOUR)

    def last_price(self, symbol: str, now_ms: int) -> tuple[D, int] | None:
        return D(f"{self.close[-1]:.1f}"), int(self.ts[-1]) + HOUR


@contextmanager
def live(venue: str) -> Iterator[tuple[Engine, CcxtExchange, MemoryStore]]:
    clock = LiveClock()
    backend = SimulatedExchange(
        {BTC: load_instruments(venue)[BTC]},
        clock,
        starting_balance=D(10000),
        margin_mode=MarginMode.ISOLATED,
    )
    market = NowMarket()
    price = market.last_price(BTC, clock.now_ms())
    assert price is not None
    backend.set_mark(BTC, price[0])
    cls = LoopbackBinance if venue == "binanceusdm" else LoopbackBybit
    with cls(backend, api_key=KEY, api_secret=SECRET, clock=clock, symbols=[BTC]) as server:
        adapter = loopback_adapter(
            venue, server.base_url, clock, key=KEY, secret=SECRET, account=ACCOUNT, symbols=[BTC]
        )
        store = MemoryStore()
        engine = Engine(
            clock=clock,
            exchange=adapter,
            market=market,
            store=store,
            policy=load_policy(ROOT / "policies" / "vol_target.toml"),
            contracts=[ContractSpec(BTC, "long", D(125))],
            limits=LIMITS,
            account=ACCOUNT,
            margin_mode=MarginMode.ISOLATED,
        )
        try:
            yield engine, adapter, store
        finally:
            adapter.exchange.close()
        assert server.errors == []


def _market(adapter: CcxtExchange, side: str, qty: D, cid: str, *, reduce: bool = False) -> None:
    params: dict[str, object] = {"clientOrderId": cid}
    if reduce:
        params["reduceOnly"] = True
    adapter.exchange.create_order(BTC, "market", side, float(qty), None, params)


@pytest.mark.parametrize("venue", ["binanceusdm", "bybit"])
@pytest.mark.parametrize("cooldown", [True, False], ids=["cooldown", "no-cooldown"])
def test_a_hand_short_after_a_hand_close_is_left_alone(venue: str, cooldown: bool) -> None:
    with live(venue) as (engine, adapter, store):
        if not cooldown:
            engine.cooldowns.cooldown_ms = 0
        engine.tick()
        held = adapter.fetch_positions([BTC])[BTC].qty
        assert held > 0
        _market(adapter, "sell", held, "web_close_1", reduce=True)
        engine.guard()
        assert BTC not in adapter.fetch_positions([BTC])
        _market(adapter, "sell", D("0.05"), "web_short_1")
        n = len(store.orders)
        engine.guard()
        engine.tick()
        after = adapter.fetch_positions([BTC]).get(BTC)
        assert after is not None
        assert after.qty == D("-0.05")
        assert list(store.orders)[n:] == []  # no order of the bot's on it, no stop either
        [reported] = [e.reason for e in store.events if e.kind is EventKind.FOREIGN]
        assert "not opened by this bot" in reported


@pytest.mark.parametrize("venue", ["binanceusdm", "bybit"])
def test_a_hand_addition_is_reported_and_protected_whole(venue: str) -> None:
    with live(venue) as (engine, adapter, store):
        engine.tick()
        held = adapter.fetch_positions([BTC])[BTC].qty
        _market(adapter, "buy", held, "web_add_1")
        engine.guard()
        [added] = [e.reason for e in store.events if e.kind is EventKind.ADDED]
        assert "added outside the bot" in added
        assert "manages the whole position" in added
        stops = [o for o in adapter.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
        assert sum(o.amount or 0 for o in stops) == held * 2
        assert engine.foreign == set()
