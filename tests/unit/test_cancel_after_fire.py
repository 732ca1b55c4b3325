"""A stop that fired as the bot cancelled it (to move it) is recorded as the fill it was.

The venue answers such a cancel "unknown order" (it has ended), which the port takes as done;
the engine marked the record cancelled whatever the order had become, so the stop's fill was
never recorded: no fill row, the realised loss missing from the journal, and the exit named
"outside the bot" instead of the stop. The engine on the real simulated exchange; the race made
by firing the stop between the engine's read and its cancel."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from bot.domain.enums import EventKind, OrderPurpose, OrderStatus
from bot.domain.instrument import Instrument
from bot.store.sql import SqlStore
from tests.conftest import make_exchange
from tests.unit.test_engine import BTC, FakeMarket
from tests.unit.test_stopped_while_down import engine_on


def test_a_stop_that_fired_before_its_cancel_is_recorded_filled(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, clock.now_ms())[0])  # type: ignore[index]
    engine = engine_on(store, ex, clock)
    engine.tick()  # opens and protects BTC
    held = ex.fetch_positions([BTC])[BTC]
    (stop,) = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    ex.set_mark(BTC, stop.trigger_price - Decimal(50))  # the stop fires on the venue
    assert BTC not in ex.fetch_positions([BTC])

    clock.advance(timedelta(seconds=1))
    engine._cancel(BTC, stop.client_id, clock.now_ms())  # moved on a read from before the fire

    record = store.get_order(stop.client_id)
    assert record is not None
    assert record.status is not OrderStatus.CANCELED, "the fired stop was recorded cancelled"
    clock.advance(timedelta(minutes=1))
    engine.guard()
    record = store.get_order(stop.client_id)
    assert record is not None
    assert record.status is OrderStatus.FILLED
    assert record.filled == held.qty
    fills = [f for f in store.recent_fills(50) if f.client_id == stop.client_id]
    assert len(fills) == 1
    assert fills[0].qty == held.qty
    exits = [e.reason for e in store.recent_events(50) if e.kind is EventKind.EXIT]
    assert not any("outside the bot" in r for r in exits), exits
