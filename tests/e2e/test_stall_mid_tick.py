"""A live tick stalled between its market read and its orders (the process stopped, the machine
suspended, a venue call that hung), through the real ccxt path (loopback Binance USD-M), the
whole process on one host clock the test moves (tests/fakes/host_clock.py).

The risk gate's stale-data check measured the data's age at the tick's start: after a 3 h stall
it sent the entry decided 3 h earlier on data 3 h old, past a 2 h limit, into a market that had
fallen 20 % meanwhile. The age is now measured when the order is gated: the entry is denied (a
recorded ``denied`` event, not an exception), as it is when the same stall comes before the
tick. A stop is never held back by the data's age: after a stall that follows the entry's fill,
the position still gets its stop and its take-profit."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.bootstrap import Secrets, build_live, open_store
from bot.config.loader import load_config
from bot.domain.enums import EventKind, OrderPurpose
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import Fault, LoopbackBinance
from tests.fakes.host_clock import HostClock, ccxt_reads
from tests.fakes.live_setup import BTC, live_config_text, serve_btc_history, venue_account

KEY, SECRET = "stall-key-5d21", "stall-secret-0b7e44"
STALL_MS = 3 * 3_600_000  # longer than the configuration's stale_data_seconds = 7200
ENTRY = ("/fapi/v1/order", "POST")  # market orders (the stops go to the Algo book)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> HostClock:
    host = HostClock()
    ccxt_reads(host, monkeypatch)
    return host


@pytest.fixture
def backend() -> SimulatedExchange:
    return venue_account("binanceusdm")


@pytest.fixture
def server(backend: SimulatedExchange, clock: HostClock) -> Iterator[LoopbackBinance]:
    # The venue's clock is the host's (in step): a stall moves both.
    srv = LoopbackBinance(backend, api_key=KEY, api_secret=SECRET, clock=clock, symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv


@pytest.fixture
def bot(
    tmp_path: Path, server: LoopbackBinance, clock: HostClock
) -> Iterator[tuple[Runner, SqlStore]]:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="stall",
            venue="binanceusdm",
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    config = load_config(path)
    store = open_store(config, create=True)
    runner = build_live(config, store, Secrets(KEY, SECRET, None), clock=clock)
    for started in runner.at_confirmed_start:
        started()
    try:
        yield runner, store
    finally:
        runner.engine.exchange.exchange.close()  # type: ignore[attr-defined]
        store.close()


def denials(store: SqlStore) -> list[str]:
    return [e.reason for e in store.recent_events(100, kinds=(EventKind.DENIED,))]


@pytest.mark.parametrize("where", ["after the market read", "before the tick"])
def test_an_entry_decided_before_a_stall_past_the_stale_limit_is_denied(
    bot: tuple[Runner, SqlStore],
    server: LoopbackBinance,
    backend: SimulatedExchange,
    clock: HostClock,
    where: str,
) -> None:
    runner, store = bot
    mark = backend.fetch_mark_price(BTC)
    stalled: list[int] = []

    def stall(reply: Any) -> Any:
        # The process is stopped for 3 hours; the market falls 20 % meanwhile.
        if not stalled:
            clock.stall(STALL_MS)
            backend.set_mark(BTC, (mark * Decimal("0.8")).quantize(Decimal("0.1")))
            stalled.append(clock.now_ms())
        return reply

    if where == "after the market read":
        # the first request after the market read: the leverage setting, before the entry
        server.inject(Fault("/fapi/v1/symbolConfig", "GET", kind="edit", edit=stall))
    else:
        stall(None)
    sent = len(server.calls(*ENTRY))
    result = runner.tick()
    assert stalled, "the stall did not happen: the test would prove nothing"
    assert result is not None
    [decision] = result.decisions
    assert decision.target_qty > 0  # the tick decided an entry...
    assert server.calls(*ENTRY)[sent:] == []  # ...and sent none
    assert result.denials == 1
    [denied] = denials(store)
    age = re.search(r"market data is (\d+)s old \(limit 7200s\)", denied)
    assert age is not None, denied
    assert int(age.group(1)) >= STALL_MS // 1000
    assert BTC not in backend.fetch_positions([BTC])


def test_a_stall_after_the_entry_filled_holds_back_neither_its_stop_nor_its_take_profit(
    bot: tuple[Runner, SqlStore],
    server: LoopbackBinance,
    backend: SimulatedExchange,
    clock: HostClock,
) -> None:
    """The protective orders placed after the fill are reduce-only: whatever the data's age at
    their send, they go out (the take-profit too)."""
    runner, store = bot
    policy = runner.engine.policy
    assert policy.take_profit is not None  # (the bundled vol_target places one)
    stalled: list[int] = []

    def stall(reply: Any) -> Any:
        if not stalled:
            clock.stall(STALL_MS)  # the fill is booked; its answer comes 3 h later
            stalled.append(clock.now_ms())
        return reply

    server.inject(Fault(*ENTRY, kind="edit", edit=stall))
    result = runner.tick()
    assert stalled
    assert result is not None
    assert result.orders_sent >= 1
    held = backend.fetch_positions([BTC])[BTC]
    assert held.qty > 0
    resting = {o.purpose: o for o in backend.fetch_open_orders(BTC)}
    assert set(resting) == {OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT}
    assert all(o.amount == held.qty or o.close_position for o in resting.values())
    assert denials(store) == []
