"""A position below the venue's minimum order, through the real ccxt path on both venues.

The live bot opens 0.117 BTC with its stop; then the venue raises the contract's minimum order
to 0.2 (read by the catalogue refresh). No order can carry the position any more: no stop sized
to it, no close. Binance takes a close-position stop; Bybit is not wired for one (see the
README, "A position no order can carry").

Defects: on Bybit, the next decision that moved the stop cancelled the resting stop and placed
nothing, leaving the position with no stop at all, by the bot's own hand (the planner cancelled
every resting stop when no order could be placed). And ``bot halt --flatten`` sent nothing and
raised no ``flatten_pending``: only the closes sent were noted for the incident, so the one
alert was "trading state: halted", which the runbook says closes every position, while the
position was held guard after guard.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from bot.clock import LiveClock
from bot.domain.enums import EventKind, OrderPurpose, TradingState
from bot.domain.orders import Order
from bot.runtime.catalogue_keeper import CatalogueKeeper
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.fakes.alert_outbox import Outbox
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
KEY, SECRET = "belowmin-key-7c3e", "belowmin-secret-91d0f2"
RAISED = Decimal("0.2")  # the venue's new minimum order: above what the bot holds
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
            name="bmin",
            venue=venue,
            base_url=server.base_url,
            database=tmp_path / "state.db",
            log_dir=tmp_path / "logs",
        )
    )
    built, store = start_live(path, KEY, SECRET)
    yield built, store
    stop_live(built, store)


def _stops(backend: SimulatedExchange) -> list[Order]:
    return [o for o in backend.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]


def _held(backend: SimulatedExchange) -> Decimal:
    pos = backend.fetch_positions([BTC]).get(BTC)
    return pos.qty if pos is not None else Decimal(0)


def _raise_the_minimum(
    run: Runner, server: LoopbackServer, backend: SimulatedExchange, *, mark_up: str = "1"
) -> None:
    """The venue raises BTC's minimum order above the position (and its mark moves by
    ``mark_up``); the bot's catalogue refresh reads it, as its hourly check would."""
    with server.lock:
        inst = backend.book.instruments[BTC]
        backend.book.instruments[BTC] = replace(inst, min_qty=RAISED)
        backend.set_mark(BTC, inst.floor_price(backend.marks[BTC] * Decimal(mark_up)))
    owners = [getattr(check, "__self__", None) for check in run.before_tick]
    [keeper] = [k for k in owners if isinstance(k, CatalogueKeeper)]
    keeper.refresh(LiveClock().now_ms())
    assert run.engine.instruments[BTC].min_qty == RAISED


def test_a_stop_that_still_protects_is_kept_when_no_order_can_replace_it(
    runner: tuple[Runner, SqlStore],
    server: LoopbackServer,
    backend: SimulatedExchange,
    venue: str,
) -> None:
    run, store = runner
    assert run.tick() is not None
    held = _held(backend)
    assert 0 < held < RAISED
    [stop] = _stops(backend)
    _raise_the_minimum(run, server, backend, mark_up="1.05")  # the stop trails up: moved
    cancels = len(server.calls("/v5/order/cancel"))
    assert run.tick() is not None
    run.guard()
    run.guard()

    assert _held(backend) == held  # no order can close it either
    [now] = _stops(backend)  # never without one
    kinds = [e.kind for e in store.recent_events(200)]
    assert EventKind.UNPROTECTED not in kinds
    if venue == "bybit":
        # no order can replace it: the stop that protects stays where it is, untouched
        assert (now.client_id, now.amount, now.trigger_price) == (
            stop.client_id,
            held,
            stop.trigger_price,
        )
        cancelled = [c.params.get("orderLinkId") for c in server.calls("/v5/order/cancel")]
        assert stop.client_id not in cancelled[cancels:]
        [kept] = [
            e.reason
            for e in store.recent_events(200, kinds=(EventKind.RECONCILE,))
            if "kept at" in e.reason
        ]  # said once, not at every job
        assert f"stop-loss {stop.client_id} kept at {stop.trigger_price}" in kept
        assert f"below the exchange's minimum order {RAISED}" in kept
    else:
        # Binance: a close-position stop covers it whole, at the trigger the policy wants
        assert now.close_position
        assert stop.trigger_price is not None
        assert now.trigger_price is not None
        assert now.trigger_price > stop.trigger_price


def test_a_halt_that_flattens_a_position_no_order_can_close_is_a_flatten_pending_incident(
    runner: tuple[Runner, SqlStore],
    server: LoopbackServer,
    backend: SimulatedExchange,
) -> None:
    run, store = runner
    out = Outbox().serve(run.notifier)
    assert run.tick() is not None
    held = _held(backend)
    _raise_the_minimum(run, server, backend)
    store.post_command(
        "halt", json.dumps({"flatten": True, "reason": "owner: flatten"}), LiveClock().now_ms()
    )
    run.guard()  # the halt; no close can be built for the position
    memory = store.load_risk_memory()
    assert memory is not None
    assert (memory.state, memory.flatten) == (TradingState.HALTED, True)
    run.guard()  # a job later, still held: the incident
    run.guard()
    assert run.tick() is not None

    assert _held(backend) == held
    assert _stops(backend) != []  # its stop kept: the only protection it can have
    [pending] = store.recent_events(200, kinds=(EventKind.FLATTEN_PENDING,))
    assert pending.symbol == BTC
    assert f"the position {held} is still held: no close order can be sent" in pending.reason
    assert f"below the exchange's minimum order {RAISED}" in pending.reason
    [body] = out.bodies(f"flatten_pending:{BTC}")  # critical, once
    assert "no close order can be sent" in body


def test_no_increase_replaces_a_kept_stop_on_a_position_off_the_step(
    runner: tuple[Runner, SqlStore],
    server: LoopbackServer,
    backend: SimulatedExchange,
    venue: str,
) -> None:
    """The venue makes the step coarser (0.117 is off 0.01); then the market rises and the loss
    budget lets the policy add 0.08. On Bybit the increase was sent and the stop of the larger
    position (0.19, its part on the step) replaced the kept stop on the whole 0.117: the bot's
    own increase left 0.007 with no stop. A position a kept stop covers whole is not increased
    off the step; Binance's close-position stop covers any size, so there the increase goes."""
    run, store = runner
    assert run.tick() is not None
    held = _held(backend)
    with server.lock:
        inst = backend.book.instruments[BTC]
        backend.book.instruments[BTC] = replace(
            inst, step_size=Decimal("0.01"), min_qty=Decimal("0.01")
        )
    owners = [getattr(check, "__self__", None) for check in run.before_tick]
    [keeper] = [k for k in owners if isinstance(k, CatalogueKeeper)]
    keeper.refresh(LiveClock().now_ms())
    run.guard()
    assert not run.engine.instruments[BTC].orderable(held)
    with server.lock:  # the market rises 5 %: the loss budget lets the policy add
        backend.set_mark(BTC, inst.floor_price(backend.marks[BTC] * Decimal("1.05")))
    assert run.tick() is not None
    run.guard()

    now = _held(backend)
    stops = _stops(backend)
    assert EventKind.UNPROTECTED not in [e.kind for e in store.recent_events(200)]
    if venue == "bybit":
        assert now == held  # not increased
        [stop] = stops
        assert stop.amount == held  # the kept stop, on the whole position
        [note] = [
            e.reason
            for e in store.recent_events(200, kinds=(EventKind.RECONCILE,))
            if "not sent" in e.reason
        ]
        assert f"position {held} is covered whole by a kept stop-loss" in note
    else:
        assert now > held  # increased: a close-position stop covers the whole position
        [stop] = stops
        assert stop.close_position
