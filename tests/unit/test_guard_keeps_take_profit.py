"""A stop cancelled by hand is put back by the next guard, and the bot's own take-profit stays.

The guard's stop repair (``Engine.protect_without_decision``) asked for "no take-profit", and
the protection plan cancelled the resting one: the take-profit the policy decided was gone until
the next decision tick (an hour for vol_target, a day for a daily policy), with no event saying
so. The engine on the real simulated exchange; the stop cancelled on the venue's side."""

from __future__ import annotations

from datetime import timedelta

from bot.domain.enums import EventKind, OrderPurpose
from bot.domain.instrument import Instrument
from bot.store.sql import SqlStore
from tests.conftest import make_exchange
from tests.unit.test_engine import BTC, FakeMarket
from tests.unit.test_stopped_while_down import engine_on


def test_the_guard_puts_back_a_cancelled_stop_and_keeps_the_take_profit(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    ex, clock = make_exchange(instruments)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, clock.now_ms())[0])  # type: ignore[index]
    engine = engine_on(store, ex, clock)
    engine.tick()  # opens and protects BTC
    held = ex.fetch_positions([BTC])[BTC]
    resting = {o.purpose: o for o in ex.fetch_open_orders(BTC)}
    assert set(resting) == {OrderPurpose.STOP_LOSS, OrderPurpose.TAKE_PROFIT}
    take = resting[OrderPurpose.TAKE_PROFIT]
    ex.cancel_order(BTC, resting[OrderPurpose.STOP_LOSS].client_id)  # by hand

    clock.advance(timedelta(minutes=1))
    engine.guard()

    after = {o.purpose: o for o in ex.fetch_open_orders(BTC)}
    assert OrderPurpose.STOP_LOSS in after, "the stop was not put back"
    assert after[OrderPurpose.STOP_LOSS].amount == held.qty
    assert OrderPurpose.TAKE_PROFIT in after, "the guard cancelled the bot's take-profit"
    assert after[OrderPurpose.TAKE_PROFIT].client_id == take.client_id, "replaced, not kept"
    notes = [e.reason for e in store.recent_events(20) if e.kind is EventKind.RECONCILE]
    assert not any("without fresh market data" in n for n in notes), notes
