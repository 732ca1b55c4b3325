"""A positions answer behind a fill the venue has just reported.

The bot's stop fired; asked by client id, the venue answers it filled, while its positions
endpoint still holds the position as before (the two answers come from different services).
Believed, the account holds the stop's loss twice, in the wallet and in the position's
unrealised PnL. The reconcile takes such an answer as unreadable (nothing sent), for at most
:data:`~bot.engine.reconcile.BEHIND_FOR_MS`; then it is believed (a position opened again to
the same size by hand must not stay unreadable forever). The exchange is the real simulated
one; only its positions answer is held back (a hand-written fake, no mock).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal as D

from bot.clock import SimClock
from bot.domain.enums import EventKind, MarginMode, OrderPurpose, TradingState
from bot.domain.instrument import Instrument
from bot.domain.position import Position
from bot.engine.reconcile import BEHIND_FOR_MS
from bot.engine.tick import Engine
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.conftest import T0
from tests.unit.test_engine import BTC, FakeMarket
from tests.unit.test_stopped_while_down import engine_on


class LaggingPositions(SimulatedExchange):
    """The simulated venue, whose positions answer can be frozen at one moment."""

    frozen: dict[str, Position] | None = None

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        if self.frozen is not None:
            return {s: p for s, p in self.frozen.items() if s in symbols}
        return super().fetch_positions(symbols)


def setup(
    instruments: dict[str, Instrument], store: SqlStore
) -> tuple[Engine, LaggingPositions, SimClock]:
    clock = SimClock(T0)
    ex = LaggingPositions(
        instruments, clock, starting_balance=D(10_000), margin_mode=MarginMode.ISOLATED
    )
    ex.set_mark(BTC, FakeMarket().last_price(BTC, T0)[0])  # type: ignore[index]
    engine = engine_on(store, ex, clock)  # vol_target, BTC long
    assert engine.tick().unreadable is None  # opens and protects BTC
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    ex.frozen = ex.fetch_positions([BTC])
    (stop,) = [o for o in ex.fetch_open_orders(BTC) if o.purpose is OrderPurpose.STOP_LOSS]
    assert stop.trigger_price is not None
    ex.set_mark(BTC, stop.trigger_price - instruments[BTC].tick_size)  # the stop fires;
    # the answer stays as it was
    assert BTC not in SimulatedExchange.fetch_positions(ex, [BTC])
    return engine, ex, clock


def test_an_answer_behind_the_fill_is_unreadable_then_read_again(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    engine, ex, clock = setup(instruments, store)
    sent = len(ex.orders)
    clock.advance(timedelta(minutes=1))
    result = engine.tick()
    assert result.unreadable is not None
    assert "behind the fill" in result.unreadable
    assert len(ex.orders) == sent, "an order went out on the answer behind the fill"
    assert engine.cooldowns.active(BTC, clock.now_ms()) is None  # not known yet

    ex.frozen = None  # the venue caught up
    clock.advance(timedelta(minutes=1))
    result = engine.tick()
    assert result.unreadable is None
    assert result.state is TradingState.ACTIVE
    assert engine.cooldowns.active(BTC, clock.now_ms()) is not None, "the stop-out was lost"
    assert [e for e in store.recent_events(50) if e.kind is EventKind.TRIGGERED]
    assert not [e for e in store.recent_events(50) if e.kind is EventKind.UNPROTECTED]


def test_an_answer_that_stays_behind_is_believed_after_a_while(
    instruments: dict[str, Instrument], store: SqlStore
) -> None:
    engine, _, clock = setup(instruments, store)
    clock.advance(timedelta(minutes=1))
    first = clock.now_ms()
    assert engine.tick().unreadable is not None
    while clock.now_ms() - first < BEHIND_FOR_MS:
        assert engine.tick().unreadable is not None
        clock.advance(timedelta(seconds=30))
    result = engine.tick()
    assert result.unreadable is None, result.unreadable
    taken = [e.reason for e in store.recent_events(50) if e.kind is EventKind.RECONCILE]
    assert any("taken as the position held" in r for r in taken), taken
