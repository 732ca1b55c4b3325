"""A guard records what it read (bot/engine/readings.py), but not while an order it sent has an
unknown outcome: the venue may have executed it, and a start counts on top of the last record
only the orders sent after it.

The case: under ``bot halt --flatten`` a guard's close executes but its answer is lost; the
guard recorded the long it had read before the close, at the close's own time. The next guard
settled the close filled and died before recording. The restart took the recorded long for
held, found the account flat, and named the bot's own close an exit "outside the bot", with a
day's re-entry cooldown (a regression of the guard's record, found by review).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import timedelta

import pytest

from bot.clock import SimClock
from bot.domain.enums import EventKind, OrderPurpose, OrderStatus, TradingState
from bot.domain.instrument import Instrument
from bot.domain.orders import Order, OrderRequest
from bot.domain.position import Position
from bot.engine.tick import Engine
from bot.errors import OutcomeUnknown, TransientExchangeError
from bot.risk.state import set_state
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore
from tests.unit.test_engine import BTC, build


class Killed(BaseException):
    """The process dies (kill -9) in the middle of a job."""


class LossyExchange(SimulatedExchange):
    """The simulated venue, whose answer to a close can be lost after it executed, and whose
    positions read can fail."""

    lose_close_answer = False
    positions_fail: BaseException | None = None

    def lookups_are_final(self) -> bool:
        return False

    def place_order(self, request: OrderRequest) -> Order:
        order = super().place_order(request)
        if self.lose_close_answer and request.purpose is OrderPurpose.CLOSE:
            raise OutcomeUnknown("answer lost (timeout)")
        return order

    def fetch_positions(self, symbols: Sequence[str]) -> dict[str, Position]:
        if self.positions_fail is not None:
            raise self.positions_fail
        return super().fetch_positions(symbols)


def _closes(store: SqlStore) -> list[str]:
    return [
        r.client_id for r in store.recent_orders(1000) if r.request.purpose is OrderPurpose.CLOSE
    ]


@pytest.mark.parametrize(
    "failure",
    [Killed(), TransientExchangeError("positions: 503 Service Unavailable")],
    ids=["killed", "venue-error"],
)
def test_a_flatten_close_of_unknown_outcome_is_not_an_outside_exit_at_the_restart(
    instruments: dict[str, Instrument], store: SqlStore, failure: BaseException
) -> None:
    memory_engine, ex, _ = build(instruments)
    clock = memory_engine.clock
    assert isinstance(clock, SimClock)

    def engine() -> Engine:
        return Engine(
            clock=clock,
            exchange=ex,
            market=memory_engine.market,
            store=store,
            policy=memory_engine.policy,
            contracts=memory_engine.contracts,
            limits=memory_engine.limits,
            account="t",
            margin_mode=memory_engine.margin_mode,
        )

    ex.__class__ = LossyExchange
    assert isinstance(ex, LossyExchange)
    running = engine()
    running.tick()
    assert ex.fetch_positions([BTC])[BTC].qty > 0
    memory = store.load_risk_memory()
    assert memory is not None
    store.save_risk_memory(
        set_state(memory, TradingState.HALTED, "bot halt --flatten", sticky=True)
    )
    clock.advance(timedelta(minutes=5))
    ex.lose_close_answer = True
    running.guard()  # the close executes, its answer is lost
    ex.lose_close_answer = False
    assert BTC not in ex.fetch_positions([BTC])
    [close] = _closes(store)
    record = store.get_order(close)
    assert record is not None
    assert record.status is OrderStatus.UNKNOWN
    clock.advance(timedelta(minutes=1))
    ex.positions_fail = failure
    with contextlib.suppress(Killed, TransientExchangeError):
        running.guard()  # settles the close filled, then fails before its record
    ex.positions_fail = None
    record = store.get_order(close)
    assert record is not None
    assert record.status is OrderStatus.FILLED
    before = len(store.recent_events(100_000))
    clock.advance(timedelta(minutes=1))
    engine().guard()  # the restart
    new = store.recent_events(100_000)[: len(store.recent_events(100_000)) - before]
    assert [e.reason for e in new if e.kind in (EventKind.EXIT, EventKind.COOLDOWN)] == []
