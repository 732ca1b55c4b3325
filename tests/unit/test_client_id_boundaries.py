"""Boundaries of the uniqueness of client order ids (bot/ports/client_ids.py make_client_id,
bot/engine/tick.py Engine._new_id_factory) that no other test pins.

(Found by mutation testing: each test fails on a mutant of the code that the rest of the
suite let pass.)

An id is ``<account>-<purpose>-<BASE>-<second>-<n>``: the job's second and a sequence that
starts at 0 in every job. Two jobs of one second are told apart by the store (an id already
recorded is skipped) or, while the store cannot be read (protect_without_store), by the
highest sequence number this process made in that second. An id made twice is an order the
venue refuses while the first rests (Binance -4116 duplicate) or two orders under one record
of the state database."""

from __future__ import annotations

from datetime import timedelta

from bot.clock import SimClock
from bot.domain.enums import OrderPurpose, OrderStatus
from bot.domain.instrument import Instrument
from bot.engine.tick import Engine
from bot.ports.client_ids import make_client_id
from bot.sim.exchange import SimulatedExchange
from bot.store.memory import MemoryStore
from tests.conftest import T0
from tests.unit.test_engine import BTC, build


def _opened(instruments: dict[str, Instrument]) -> tuple[Engine, SimulatedExchange, MemoryStore]:
    """The engine's first tick at T0: it opens BTC with ids 1, 2 and 3 of that second (the
    entry, its stop, its take-profit)."""
    engine, ex, store = build(instruments)
    engine.tick()
    assert [(r.request.purpose, cid.rsplit("-", 1)[1]) for cid, r in store.orders.items()] == [
        (OrderPurpose.ENTRY, "1"),
        (OrderPurpose.STOP_LOSS, "2"),
        (OrderPurpose.TAKE_PROFIT, "3"),
    ]
    return engine, ex, store


def _resting_stop(ex: SimulatedExchange) -> str:
    [sl] = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    return sl.client_id


def _cancel_the_stop(ex: SimulatedExchange) -> str:
    """The resting stop cancelled by hand on the venue: the next job must place one."""
    cid = _resting_stop(ex)
    ex.cancel_order(BTC, cid)
    return cid


def test_a_job_without_the_store_continues_after_every_id_of_its_second(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant c_id_high_upd (the highest sequence number of the second not raised after the
    second's first id): the tick made ids 1, 2 and 3 in its second; its stop is gone and the
    database fails in that same second. The stop the store-less job places
    (protect_without_store) must continue at 4: starting after 1, it was made as 2, the tick's
    stop's id, and the record made of it once the database was back
    (record_unrecorded) took it for a retry of the tick's stop and wrote the new order into
    that record: the state database lost one of the two stops."""
    engine, ex, store = _opened(instruments)
    ticks_stop = _cancel_the_stop(ex)
    record = store.orders[ticks_stop]
    assert engine.protect_without_store()
    placed = _resting_stop(ex)
    assert placed == ticks_stop[: -len("-2")] + "-4"
    engine.record_unrecorded()
    assert store.orders[ticks_stop] == record  # the tick's stop's record, untouched
    assert store.orders[placed].status is OrderStatus.OPEN
    assert len(store.orders) == 4


def test_ids_a_second_apart_differ_by_their_time_alone(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant c_minute (the id's time in minutes): a store-less job restarts its sequence in
    every new second, so a job of another second must differ by the time part alone. The tick
    at T0 opens BTC; its stop cancelled by hand, the guard one second later places one (the
    first id of its second: n = 1); cancelled again, the store-less job a second after that
    places one too, n = 1 of ITS second. In minutes, both were the same id."""
    a = make_client_id("t", OrderPurpose.STOP_LOSS, BTC, T0, 1)
    assert a != make_client_id("t", OrderPurpose.STOP_LOSS, BTC, T0 + 1000, 1)
    engine, ex, store = _opened(instruments)
    clock = ex.clock
    assert isinstance(clock, SimClock)
    _cancel_the_stop(ex)
    clock.advance(timedelta(seconds=1))
    engine.guard()
    guards = _cancel_the_stop(ex)
    assert guards.endswith("-1")
    clock.advance(timedelta(seconds=1))
    assert engine.protect_without_store()
    placed = _resting_stop(ex)
    assert placed.endswith("-1")
    assert placed != guards
    engine.record_unrecorded()
    assert guards in store.orders
    assert store.orders[placed].status is OrderStatus.OPEN


def test_a_second_job_of_the_same_second_skips_the_ids_the_store_holds(
    instruments: dict[str, Instrument],
) -> None:
    """Mutant c_nolookup (ids not looked up in the store): every job starts its sequence at
    0, so the second job of one second (the guard and a tick on the same second, a restart)
    makes the first's ids again unless the store says they are taken. The tick at T0 made
    ids 1 to 3 (its stop: 2); its stop cancelled by hand, a guard of that second places
    stop 1; cancelled again, the next guard of that second finds stop ids 1 and 2 recorded
    and places stop 3. Without the look-up it made stop 1 again, an id the store holds: its
    intent cannot be recorded (the store refuses a client id twice), the guard fails and the
    position stays without its stop (on the venue, with the first still resting: -4116)."""
    engine, ex, store = _opened(instruments)
    _cancel_the_stop(ex)
    engine.guard()
    first = _cancel_the_stop(ex)
    assert first.endswith("-1")
    engine.guard()
    second = _resting_stop(ex)
    assert second == first[: -len("-1")] + "-3"
    assert len(store.orders) == 5  # the tick's three, the two stops of the guards
