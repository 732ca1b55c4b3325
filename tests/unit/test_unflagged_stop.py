"""An own stop-loss the venue reports without its closing flag (``Order.close_on_trigger``
False: Bybit ``closeOnTrigger``, which a version before 3a7cbde never sent) is replaced after
a restart by one the bot sends, the new one placed first, once: Bybit cancels such a stop when
it triggers on an account short of free margin, and the position stayed open past its stop
with none. The engine on the real simulated exchange (a venue without the flag: its orders
carry None and nothing changes there); the flag set on the venue's side as the adapter reads
it from a Bybit row."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal as D

from bot.clock import SimClock
from bot.domain.enums import EventKind, MarginMode, OrderPurpose
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.engine.tick import Engine
from bot.errors import OrderRejected
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.conftest import T0
from tests.unit.test_engine import BTC, FakeMarket
from tests.unit.test_stopped_while_down import engine_on


class Venue(SimulatedExchange):
    """The simulated venue, its order calls written down in order (``calls``); the next
    ``refuse`` stop-losses are refused."""

    refuse = 0

    @property
    def calls(self) -> list[tuple[str, str]]:
        calls: list[tuple[str, str]] = self.__dict__.setdefault("_calls", [])
        return calls

    def place_order(self, request: OrderRequest) -> Order:
        self.calls.append(("place", request.client_id))
        if request.purpose is OrderPurpose.STOP_LOSS and self.refuse:
            self.refuse -= 1
            raise OrderRejected("the venue refuses the stop")
        return super().place_order(request)

    def cancel_order(self, symbol: str, client_id: str) -> Order | None:
        self.calls.append(("cancel", client_id))
        return super().cancel_order(symbol, client_id)


def _venue(instruments: dict[str, Instrument]) -> tuple[Venue, SimClock]:
    clock = SimClock(T0)
    ex = Venue(instruments, clock, starting_balance=D(10000), margin_mode=MarginMode.ISOLATED)
    ex.set_mark(BTC, FakeMarket().last_price(BTC, clock.now_ms())[0])  # type: ignore[index]
    return ex, clock


def _stops(ex: SimulatedExchange) -> list[Order]:
    return [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]


def _unflag(ex: SimulatedExchange) -> Order:
    """The position's one stop, reported without the closing flag from now on."""
    (stop,) = _stops(ex)
    ex.resting[BTC][stop.client_id] = replace(stop, close_on_trigger=False)
    return stop


def _guards(engine: Engine, clock: SimClock, n: int) -> None:
    for _ in range(n):
        clock.advance(timedelta(minutes=1))
        engine.guard()


def _flag_notes(store: SqlStore) -> list[str]:
    return [
        e.reason
        for e in store.recent_events(100)
        if e.kind is EventKind.RECONCILE and "closing flag" in e.reason
    ]


def test_an_older_version_s_stop_is_replaced_new_first_once(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    ex, clock = _venue(instruments)
    engine_on(store, ex, clock).tick()  # opens and protects BTC
    held = ex.fetch_positions([BTC])[BTC]
    old = _unflag(ex)
    ex.calls.clear()

    upgraded = engine_on(store, ex, clock)  # the upgraded bot starts on the same account
    _guards(upgraded, clock, 3)

    (new,) = _stops(ex)
    assert new.client_id != old.client_id
    assert (new.amount, new.trigger_price) == (held.qty, old.trigger_price)
    assert ex.calls == [("place", new.client_id), ("cancel", old.client_id)]
    assert ex.fetch_positions([BTC])[BTC].qty == held.qty
    assert len(_flag_notes(store)) == 1
    assert not [e for e in store.recent_events(100) if e.kind is EventKind.UNPROTECTED]


def test_a_stop_this_process_sent_is_not_replaced_for_the_flag(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """The bot sends every stop with the flag: one of its own reported without it is the
    venue's doing, and a replacement would be reported the same, one at every job."""
    ex, clock = _venue(instruments)
    engine = engine_on(store, ex, clock)
    engine.tick()
    stop = _unflag(ex)
    ex.calls.clear()
    _guards(engine, clock, 3)
    assert ex.calls == []
    assert [o.client_id for o in _stops(ex)] == [stop.client_id]
    assert _flag_notes(store) == []


def test_a_refused_replacement_keeps_the_old_stop_and_is_not_tried_at_every_job(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    ex, clock = _venue(instruments)
    engine_on(store, ex, clock).tick()
    held = ex.fetch_positions([BTC])[BTC]
    old = _unflag(ex)
    ex.calls.clear()
    ex.refuse = 1

    upgraded = engine_on(store, ex, clock)
    _guards(upgraded, clock, 3)

    assert [o.client_id for o in _stops(ex)] == [old.client_id]  # never cancelled first
    assert [c for c, _ in ex.calls] == ["place"]  # tried once
    assert ex.fetch_positions([BTC])[BTC].qty == held.qty  # still protected, not closed
    assert not [e for e in store.recent_events(100) if e.kind is EventKind.UNPROTECTED]


def test_a_stop_whose_flag_the_venue_does_not_say_is_kept(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    """None (the row does not say) is unknown, not "without": kept, read again each job; the
    simulated venue's own stops carry None, and nothing moves there."""
    ex, clock = _venue(instruments)
    engine_on(store, ex, clock).tick()
    (stop,) = _stops(ex)
    assert stop.close_on_trigger is None
    ex.calls.clear()
    upgraded = engine_on(store, ex, clock)
    _guards(upgraded, clock, 2)
    assert ex.calls == []
    _unflag(ex)  # now the venue says it: replaced at the next job
    _guards(upgraded, clock, 2)
    (new,) = _stops(ex)
    assert ex.calls == [("place", new.client_id), ("cancel", stop.client_id)]
