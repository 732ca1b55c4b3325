"""A stop-loss that fires is recorded with what it traded, on both venues.

A live bot over the loopback venue opens a position and rests its stop; the mark falls through
the stop and the venue fills it. The next guard finds the stop gone from the open list and
settles it by client id: the order record, the fill row (the journal's realised loss) and the
``triggered`` event carry the venue's quantity and price. On Binance the bot recorded it
"filled 0 at None" with no fill row: a fired algo order does not say what it traded (see
tests/contract/test_fired_stop_fill.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.domain.enums import EventKind, OrderPurpose, OrderStatus
from bot.domain.orders import Order, OrderRequest
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.binance_loopback import LoopbackBinance
from tests.fakes.bybit_loopback import LoopbackBybit
from tests.fakes.live_setup import (
    live_config_text,
    serve_btc_history,
    start_live,
    stop_live,
    venue_account,
)
from tests.fakes.loopback_core import LoopbackServer

BTC = "BTC/USDT:USDT"
KEY, SECRET = "stopfill-key-8d2a", "stopfill-secret-4e61b0"
SERVERS: dict[str, type[LoopbackServer]] = {"binanceusdm": LoopbackBinance, "bybit": LoopbackBybit}


@pytest.fixture(params=sorted(SERVERS))
def venue(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(venue: str) -> SimulatedExchange:
    return venue_account(venue)


@pytest.fixture
def server(backend: SimulatedExchange, venue: str) -> Iterator[LoopbackServer]:
    srv = SERVERS[venue](backend, api_key=KEY, api_secret=SECRET, clock=LiveClock(), symbols=[BTC])
    serve_btc_history(srv, backend)
    with srv:
        yield srv
    assert srv.errors == []


@pytest.fixture
def runner(tmp_path: Path, server: LoopbackServer, venue: str) -> Iterator[tuple[Runner, SqlStore]]:
    path = tmp_path / "config.toml"
    path.write_text(
        live_config_text(
            name="sfill",
            venue=venue,
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    built, store = start_live(path, KEY, SECRET)
    yield built, store
    stop_live(built, store)


def test_a_fired_stop_is_recorded_with_its_fill(
    runner: tuple[Runner, SqlStore], server: LoopbackServer, backend: SimulatedExchange
) -> None:
    run, store = runner
    assert run.tick() is not None
    [stop] = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    below = stop.trigger_price - 1
    with server.lock:  # a crash: the mark passes the stop, the venue fills it
        backend.set_mark(BTC, below, last=below * Decimal("0.97"))
    venue_order = backend.fetch_order(BTC, stop.client_id)
    assert venue_order is not None
    assert venue_order.status is OrderStatus.FILLED
    assert venue_order.filled > 0
    assert venue_order.average_price is not None
    run.guard()
    record = store.get_order(stop.client_id)
    assert record is not None
    assert (record.status, record.filled, record.average_price) == (
        OrderStatus.FILLED,
        venue_order.filled,
        venue_order.average_price,
    )
    [fill] = [f for f in store.recent_fills(20) if f.client_id == stop.client_id]
    assert (fill.qty, fill.price, fill.purpose) == (
        venue_order.filled,
        venue_order.average_price,
        OrderPurpose.STOP_LOSS,
    )
    assert fill.realized_pnl < 0
    assert fill.fee > 0
    [triggered] = [e for e in store.recent_events(50) if e.kind is EventKind.TRIGGERED]
    assert triggered.reason.endswith(
        f"filled {venue_order.filled} at {venue_order.average_price}"
    ), triggered.reason


# -- the exit named from the fill, whichever reading found it -------------------------------------


def _exits(store: SqlStore) -> list[str]:
    return [e.reason for e in store.recent_events(100, kinds=(EventKind.EXIT,))]


def _cooldowns(store: SqlStore) -> list[str]:
    return [e.reason for e in store.recent_events(100, kinds=(EventKind.COOLDOWN,))]


def test_a_stop_that_fires_right_after_a_guards_reading_is_a_stop_loss(
    runner: tuple[Runner, SqlStore], server: LoopbackServer, backend: SimulatedExchange
) -> None:
    """The stop fires just after the guard's own reading. The runner read the account again
    for its alert conditions, found the stop filled and settled its record, and the next job
    named it "closed outside the bot" (an exit event, a warning alert, the cooldown's reason):
    the record was settled already, and the reading that found the fill named no exit. The
    runner reads nothing after a guard now (the guard's reading serves its alert conditions),
    and the next guard finds the fill and names it. (A reading the runner still makes after a
    job that left none, names no exit and spends none: tests/unit/test_exit_names.py.)"""
    run, store = runner
    assert run.tick() is not None
    run.guard()
    [stop] = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    through = stop.trigger_price - 1
    guard = run.engine.guard
    after_the_guard: list[int] = []

    def guard_then_the_stop_fires(observed_equity: Decimal | None = None) -> None:
        guard(observed_equity)
        with server.lock:
            backend.set_mark(BTC, through)
        after_the_guard.append(len(server.requests))

    run.engine.guard = guard_then_the_stop_fires  # type: ignore[method-assign]
    run.guard()
    run.engine.guard = guard  # type: ignore[method-assign]
    [first] = after_the_guard
    assert server.requests[first:] == []  # the runner read nothing after the guard's reading
    assert store.recent_events(50, kinds=(EventKind.TRIGGERED,)) == []
    run.guard()  # the next minute
    [triggered] = store.recent_events(50, kinds=(EventKind.TRIGGERED,))
    assert stop.client_id in triggered.reason
    assert _exits(store) == []
    [cooldown] = _cooldowns(store)
    assert "after stop-loss [" in cooldown


def test_a_halts_close_refused_because_the_stop_fired_first_is_a_stop_loss(
    runner: tuple[Runner, SqlStore], server: LoopbackServer, backend: SimulatedExchange
) -> None:
    """``bot halt --flatten``: between the guard's reading and its close the mark passes the
    stop and the venue fills it; the close finds no position (Binance -2022 "ReduceOnly Order
    is rejected", Bybit 110017 "current position is zero"). The exit is the bot's stop-loss,
    and the halt's closes leave nothing open: no flatten incident."""
    run, store = runner
    assert run.tick() is not None
    run.guard()
    [stop] = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    through = stop.trigger_price - 1
    place = backend.place_order

    def the_stop_fires_first(request: OrderRequest) -> Order:
        if request.reduce_only and not request.type.is_conditional:  # the halt's close
            backend.set_mark(BTC, through)
        return place(request)

    backend.place_order = the_stop_fires_first  # type: ignore[method-assign]
    store.post_command("halt", json.dumps({"flatten": True}), LiveClock().now_ms())
    for _ in range(3):
        run.guard()
    assert backend.fetch_positions([BTC]).get(BTC) is None
    [refused] = store.recent_events(100, kinds=(EventKind.REJECTED,))
    assert "-2022" in refused.reason or "110017" in refused.reason
    assert _exits(store) == []
    [cooldown] = _cooldowns(store)
    assert "after stop-loss [" in cooldown
    assert store.recent_events(100, kinds=(EventKind.FLATTEN_PENDING,)) == []


class Killed(BaseException):
    """kill -9 at one chosen point (not an Exception: nothing in the bot catches it)."""


def test_a_stop_fill_settled_by_a_guard_killed_before_naming_it_is_a_stop_loss_after_restart(
    runner: tuple[Runner, SqlStore],
    server: LoopbackServer,
    backend: SimulatedExchange,
    tmp_path: Path,
) -> None:
    """The guard's reconcile finds the bot's stop filled and settles its record; the process
    is killed before ``Engine.note_exits`` names the exit. The restarted bot named it "closed
    outside the bot" (an exit event, a warning alert, the cooldown's reason): that it was the
    bot's stop lived in memory only. It names it from the order record: a stop-loss, once."""
    run, store = runner
    assert run.tick() is not None
    run.guard()
    [stop] = [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    with server.lock:
        backend.set_mark(BTC, stop.trigger_price - 1)  # the venue fills the stop

    def die(*_args: object, **_kwargs: object) -> None:
        raise Killed

    run.engine.note_exits = die  # type: ignore[method-assign]
    with pytest.raises(Killed):
        run.guard()
    record = store.get_order(stop.client_id)
    assert record is not None
    assert record.status is OrderStatus.FILLED  # settled before the kill
    stop_live(run, store)
    again, store2 = start_live(tmp_path / "config.toml", KEY, SECRET)
    try:
        again.tick()
        again.guard()
        assert _exits(store2) == []
        [cooldown] = _cooldowns(store2)
        assert "after stop-loss [" in cooldown
    finally:
        stop_live(again, store2)
