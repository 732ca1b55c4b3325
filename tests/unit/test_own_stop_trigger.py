"""The bot's own stop changed outside it to trigger on the last price (Bybit amends an order's
``triggerBy``) is replaced by a mark-triggered one, and the position is not closed: the engine
on the real simulated exchange, the stop's trigger reference changed on the venue's side."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bot.domain.enums import EventKind, OrderPurpose, TriggerBy
from bot.domain.instrument import Instrument
from bot.store.sql import SqlStore
from tests.conftest import make_exchange
from tests.unit.test_engine import BTC, FakeMarket
from tests.unit.test_stopped_while_down import engine_on


def test_an_own_stop_moved_to_the_last_price_is_replaced_not_closed(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, clock.now_ms())[0])  # type: ignore[index]
    engine = engine_on(store, ex, clock)
    engine.tick()  # opens and protects BTC
    held = ex.fetch_positions([BTC])[BTC]
    (stop,) = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_by is TriggerBy.MARK
    ex.resting[BTC][stop.client_id] = replace(stop, trigger_by=TriggerBy.LAST)  # by hand

    clock.advance(timedelta(minutes=1))
    engine.guard()

    after = ex.fetch_positions([BTC]).get(BTC)
    assert after is not None, "the position was closed"
    assert after.qty == held.qty
    stops = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert [o.trigger_by for o in stops] == [TriggerBy.MARK]
    assert stops[0].client_id != stop.client_id, "the last-price stop was kept"
    assert stops[0].amount == held.qty
    notes = [e.reason for e in store.recent_events(50) if e.kind is EventKind.RECONCILE]
    assert any("triggered on the last price" in n for n in notes), notes
    assert not [e for e in store.recent_events(50) if e.kind is EventKind.UNPROTECTED]
