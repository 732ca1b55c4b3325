"""End to end: a contract the venue delists between two catalogue refreshes does not stop the
minute guard of the others (loopback Binance USD-M and Bybit v5, through real ccxt).

The guard's reconcile reads every contract's open orders and mark together, and the catalogue
(which withdraws a contract the venue no longer lists, and stops reading it) was refreshed only
before a decision tick: the venue's "no such symbol" to the reads of the one delisted contract
(Binance -1121, Bybit 10001 "params error: symbol invalid") failed every guard, for every
contract, until the next decision tick (an hour away on a 1h policy, a day on a 1d one). A stop
cancelled meanwhile was never put back, and the mark ran through where it had been.

Now such an answer reads the venue's market list at once: confirmed there, the contract is
withdrawn, kept as last read (never flat), and the guard reads on without it in the same job.
A refresh that is due is made before a guard too, so a delisting is seen without an error. An
answer the market list does not confirm (a contract it still has trading) withdraws nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from bot.clock import LiveClock
from bot.domain.enums import EventKind, MarginMode, OrderPurpose
from bot.instruments import load_instruments
from bot.runtime.catalogue_keeper import CatalogueKeeper
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store import views
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import hourly_rows, live_config_text, start_live, stop_live
from tests.fakes.loopback_core import Fault, LoopbackServer

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
KEY, SECRET = "delist-guard-key-2b7e", "delist-guard-secret-91c4d0"
HOUR = 3_600_000


@dataclass
class AheadClock(LiveClock):
    """The catalogue keeper's clock: the host's, moved ahead (the hourly refresh falls due
    while the venue's candles stay fresh for the engine)."""

    ahead_ms: int = 0

    def now_ms(self) -> int:
        return super().now_ms() + self.ahead_ms


@dataclass
class Live:
    venue: str
    server: LoopbackServer
    backend: SimulatedExchange
    run: Runner
    store: SqlStore


@pytest.fixture(params=["binanceusdm", "bybit"])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Live]:
    """BTC and ETH, long, on the loopback venue, after a first tick: each held, each with its
    stop."""
    venue: str = request.param
    specs = load_instruments(venue)
    backend = SimulatedExchange(
        {BTC: specs[BTC], ETH: specs[ETH]},
        LiveClock(),
        starting_balance=D(20000),
        margin_mode=MarginMode.ISOLATED,
    )
    kind = LoopbackBinance if venue == "binanceusdm" else LoopbackBybit
    server = kind(backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC, ETH])
    for sym in (BTC, ETH):
        rows = hourly_rows(400, sym)
        server.set_candles(sym, "trade", rows)
        server.set_candles(sym, "mark", rows)
        backend.set_mark(sym, rows[-1][4])
    with server:
        text = live_config_text(
            name="delist-guard",
            venue=venue,
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
            starting_balance=20000,
        )
        eth = f'[[contracts]]\nsymbol = "{ETH}"\ndirection = "long"\n\n[data]'
        path = tmp_path / "config.toml"
        path.write_text(text.replace("[data]", eth, 1))
        run, store = start_live(path, KEY, SECRET)
        try:
            assert run.tick() is not None
            for sym in (BTC, ETH):
                held = backend.fetch_positions([sym])[sym].qty
                assert held > 0, sym
                assert _stops(backend, sym) == [held], sym
            yield Live(venue, server, backend, run, store)
        finally:
            stop_live(run, store)


def _keeper(run: Runner) -> CatalogueKeeper:
    owners = [getattr(check, "__self__", None) for check in run.before_tick]
    [keeper] = [k for k in owners if isinstance(k, CatalogueKeeper)]
    return keeper


def _stops(backend: SimulatedExchange, sym: str) -> list[D]:
    return [
        o.amount
        for o in backend.fetch_open_orders(sym)
        if o.purpose is OrderPurpose.STOP_LOSS and o.amount is not None
    ]


def _naming_eth(server: LoopbackServer, since: int) -> list[str]:
    return [r.path for r in server.requests[since:] if r.params.get("symbol") == "ETHUSDT"]


def _market_list_reads(live: Live) -> int:
    path = "/fapi/v1/exchangeInfo" if live.venue == "binanceusdm" else "/v5/market/instruments-info"
    return len(live.server.calls(path))


def _delist_eth_and_cancel_btcs_stop(live: Live) -> None:
    """The venue stops listing ETH (its "no such symbol" to any request naming it); BTC's stop
    is cancelled by hand."""
    with live.server.lock:
        live.server.delisted.add(ETH)  # type: ignore[attr-defined]
        for order in live.backend.fetch_open_orders(BTC):
            if order.purpose is OrderPurpose.STOP_LOSS:
                live.backend.cancel_order(BTC, order.client_id)


def test_a_contract_delisted_between_refreshes_fails_no_guard_of_the_others(live: Live) -> None:
    run, store, backend = live.run, live.store, live.backend
    keeper = _keeper(run)
    read_at = keeper.read_at_ms
    eth = backend.fetch_positions([ETH])[ETH].qty
    _delist_eth_and_cancel_btcs_stop(live)
    run.guard()  # the catalogue refresh is not due: the venue's answer is what tells
    assert store.recent_events(100, kinds=(EventKind.TICK_FAILED,)) == []
    btc = backend.fetch_positions([BTC])[BTC].qty
    assert _stops(backend, BTC) == [btc]  # BTC's stop is back, in the same guard
    assert keeper.read_at_ms is not None
    assert read_at is not None
    assert keeper.read_at_ms > read_at  # the market list was read at once
    assert run.engine.reconciler.unlisted == {ETH}
    assert run.engine.withdrawn == {ETH}
    acct = run.engine.reconcile(LiveClock().now_ms())
    assert acct.positions[ETH].qty == eth  # as last read: unknown, never flat
    assert acct.positions[BTC].qty == btc
    [event] = [e for e in store.recent_events(100, kinds=(EventKind.CATALOGUE,)) if e.symbol == ETH]
    assert "withdrawn by the venue (the venue lists no such market)" in event.reason
    alerts = [a for a in views.recent_alerts(store, 100) if a.key.startswith(f"catalogue:{ETH}")]
    assert [a.severity for a in alerts] == ["critical"]
    asked = len(live.server.requests)
    run.guard()
    assert _naming_eth(live.server, asked) == []  # ETH is read no more
    with live.server.lock:
        backend.set_mark(BTC, backend.marks[BTC] * D("0.70"))  # BTC falls 30 %
    run.guard()
    assert BTC not in backend.fetch_positions([BTC])  # its stop closed it
    assert backend.fetch_positions([ETH])[ETH].qty == eth
    assert store.recent_events(100, kinds=(EventKind.TICK_FAILED,)) == []


def test_a_guard_makes_the_refresh_that_is_due_and_sees_a_delisting_without_an_error(
    live: Live,
) -> None:
    """On a 1h (1d, 1w) policy the next decision tick is up to an hour (a day, a week) away;
    the guard makes the overdue refresh first, so ETH is never asked for after its delisting."""
    run, store, backend = live.run, live.store, live.backend
    keeper = _keeper(run)
    clock = AheadClock()
    keeper._clock = clock  # the hourly refresh falls due for the keeper alone
    _delist_eth_and_cancel_btcs_stop(live)
    clock.ahead_ms = HOUR
    asked = len(live.server.requests)
    run.guard()
    assert keeper.read_at_ms is not None
    assert keeper.read_at_ms >= LiveClock().now_ms() + HOUR - 60_000  # read by the guard
    assert _naming_eth(live.server, asked) == []  # seen before any read of ETH
    assert run.engine.reconciler.unlisted == {ETH}
    assert _stops(backend, BTC) == [backend.fetch_positions([BTC])[BTC].qty]
    assert store.recent_events(100, kinds=(EventKind.TICK_FAILED,)) == []
    reads = _market_list_reads(live)
    for _ in range(3):
        run.guard()  # not due again: no market-list read
    assert _market_list_reads(live) == reads


def _no_such_symbol(venue: str) -> Fault:
    """The venue's "no such symbol" to the next read of one contract's open orders."""
    answer: dict[str, Any]
    if venue == "binanceusdm":
        path = "/fapi/v1/openOrders"
        answer = {"code": -1121, "msg": "Invalid symbol."}
    else:
        path = "/v5/order/realtime"
        answer = {"retCode": 10001, "retMsg": "params error: symbol invalid", "result": {}}
    return Fault(path, "GET", kind="edit", edit=lambda _: answer)


def test_an_answer_the_market_list_does_not_confirm_withdraws_nothing(live: Live) -> None:
    """A "no such symbol" for a contract the venue's market list still has trading (a symbol
    the bot got wrong, an answer of the moment) is not taken for a delisting: the guard fails
    as on any failed read, nothing is withdrawn, and the next guard reads both contracts."""
    run, store, backend = live.run, live.store, live.backend
    reads = _market_list_reads(live)
    live.server.inject(_no_such_symbol(live.venue))
    run.guard()
    assert _market_list_reads(live) > reads  # asked at once ...
    [failed] = store.recent_events(100, kinds=(EventKind.TICK_FAILED,))
    assert "does not confirm it withdrawn" in failed.reason
    assert run.engine.reconciler.unlisted == frozenset()  # ... and not believed
    assert run.engine.restricted == {}
    run.guard()
    assert run.failures_of("guard") == 0
    acct = run.engine.reconcile(LiveClock().now_ms())
    for sym in (BTC, ETH):
        assert acct.positions[sym].qty == backend.fetch_positions([sym])[sym].qty
